use super::*;

fn config(num_blocks: usize) -> SchedulerConfig {
    SchedulerConfig {
        block_size: 4,
        num_blocks,
        max_batch_tokens: 16,
        max_running: 8,
        prefix_caching: true,
    }
}

/// Runs a plan as the worker would, sampling token 7 wherever asked.
fn run(s: &mut Scheduler, plan: &Plan) {
    for w in &plan.work {
        s.commit(w, w.sample.then_some(7));
    }
}

#[test]
fn long_prompts_are_chunked_and_decodes_go_first() {
    let mut s = Scheduler::new(config(64));
    s.add(Sequence::new(1, (0..6).collect()));
    let p = s.schedule();
    assert_eq!(
        p.work,
        vec![Work {
            id: 1,
            start: 0,
            len: 6,
            sample: true
        }]
    );
    run(&mut s, &p);
    s.add(Sequence::new(2, (100..140).collect()));
    let p = s.schedule();
    // the decode of 1 first, then 15 of the 40 prompt tokens of 2 (budget 16)
    assert_eq!(
        p.work[0],
        Work {
            id: 1,
            start: 6,
            len: 1,
            sample: true
        }
    );
    assert_eq!(
        p.work[1],
        Work {
            id: 2,
            start: 0,
            len: 15,
            sample: false
        }
    );
    run(&mut s, &p);
    let p = s.schedule();
    assert_eq!(
        p.work[1],
        Work {
            id: 2,
            start: 15,
            len: 15,
            sample: false
        }
    );
    run(&mut s, &p);
    let p = s.schedule();
    assert_eq!(
        p.work[1],
        Work {
            id: 2,
            start: 30,
            len: 10,
            sample: true
        }
    );
    s.allocator().check().unwrap();
}

#[test]
fn admission_waits_for_memory_and_preemption_frees_it() {
    // 4 blocks of 4 slots: two 6-token prompts take 2 blocks each
    let mut s = Scheduler::new(config(4));
    s.add(Sequence::new(1, vec![1; 6]));
    s.add(Sequence::new(2, vec![2; 6]));
    s.add(Sequence::new(3, vec![3; 6]));
    let p = s.schedule();
    assert_eq!(p.work.len(), 2, "the third prompt does not fit");
    assert_eq!(s.num_waiting(), 1);
    run(&mut s, &p);
    // decodes at positions 6 and 7 fill both blocks; position 8 needs a third block each:
    // 2 must give way
    for _ in 0..2 {
        let p = s.schedule();
        assert!(p.preempted.is_empty());
        run(&mut s, &p);
    }
    let p = s.schedule();
    assert_eq!(p.preempted, vec![2]);
    assert_eq!(p.work.len(), 1);
    assert_eq!(s.get(2).unwrap().preemptions, 1);
    s.allocator().check().unwrap();
    // when 1 finishes, 2 comes back first (front of the queue) and keeps its tokens
    s.finish(1);
    let p = s.schedule();
    assert_eq!(p.work[0].id, 2);
    assert_eq!(s.get(2).unwrap().tokens.len(), 9);
}

#[test]
fn a_repeated_prompt_starts_from_the_prefix_cache() {
    let mut s = Scheduler::new(config(64));
    let prompt: Vec<u32> = (0..10).collect();
    s.add(Sequence::new(1, prompt.clone()));
    let p = s.schedule();
    run(&mut s, &p);
    s.finish(1);
    s.add(Sequence::new(2, prompt));
    let p = s.schedule();
    // 2 full blocks (8 tokens) cached; the last 2 computed
    assert_eq!(
        p.work,
        vec![Work {
            id: 2,
            start: 8,
            len: 2,
            sample: true
        }]
    );
    assert_eq!(s.get(2).unwrap().cached_tokens, 8);
}

#[test]
fn a_prompt_bigger_than_the_pool_fails_and_aborts_free_everything() {
    let mut s = Scheduler::new(config(2));
    s.add(Sequence::new(1, vec![0; 9]));
    s.add(Sequence::new(2, vec![0; 3]));
    let p = s.schedule();
    assert_eq!(p.failed.len(), 1);
    assert_eq!(p.work.len(), 1);
    s.abort(2);
    assert!(s.is_idle());
    assert_eq!(s.allocator().available(), 2);
}
