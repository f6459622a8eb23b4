use super::*;

fn render(src: &str, msgs: &[ChatMessage], opts: &ChatOptions) -> Result<String, TokenizerError> {
    let special = SpecialTokens {
        bos: Some("<s>".into()),
        eos: Some("</s>".into()),
        ..Default::default()
    };
    ChatTemplate::compile(src)?.render(msgs, opts, &special)
}

fn kind_of(r: Result<String, TokenizerError>) -> (TemplateErrorKind, String) {
    match r {
        Err(TokenizerError::Template { kind, message }) => (kind, message),
        other => panic!("expected a template error, got {other:?}"),
    }
}

#[test]
fn trim_and_lstrip_blocks_like_hf() {
    let src = "{% for m in messages %}\n    {% if m.role == 'user' %}\nU:{{ m.content }}\n    {% endif %}\n{% endfor %}";
    let out = render(src, &[ChatMessage::user("hi")], &ChatOptions::default()).unwrap();
    assert_eq!(out, "U:hi\n");
}

#[test]
fn hostile_loop_runs_out_of_fuel() {
    let src =
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ '' }}{% endfor %}{% endfor %}";
    let (kind, _) = kind_of(render(src, &[], &ChatOptions::default()));
    assert_eq!(kind, TemplateErrorKind::LimitExceeded);
}

#[test]
fn giant_range_is_a_limit_error() {
    let (kind, msg) = kind_of(render(
        "{% for i in range(10**12) %}x{% endfor %}",
        &[],
        &ChatOptions::default(),
    ));
    assert_eq!(kind, TemplateErrorKind::LimitExceeded, "{msg}");
}

#[test]
fn infinite_recursion_is_a_limit_error() {
    let src = "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}";
    let (kind, msg) = kind_of(render(src, &[], &ChatOptions::default()));
    assert_eq!(kind, TemplateErrorKind::LimitExceeded, "{msg}");
}

#[test]
fn raise_exception_surfaces_its_message() {
    let src = "{% if messages[0].role != 'user' %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}";
    let (kind, msg) = kind_of(render(
        src,
        &[ChatMessage::assistant("x")],
        &ChatOptions::default(),
    ));
    assert_eq!(kind, TemplateErrorKind::Raised);
    assert_eq!(
        msg,
        "Conversation roles must alternate user/assistant/user/assistant/..."
    );
}

#[test]
fn syntax_errors_are_typed() {
    let (kind, _) = kind_of(render(
        "{% for m in messages %}",
        &[],
        &ChatOptions::default(),
    ));
    assert_eq!(kind, TemplateErrorKind::Syntax);
}

#[test]
fn python_spelling_of_values() {
    let src = "{{ none }}|{{ true }}|{{ x }}|{{ 2.0 }}|{{ tools }}";
    let mut opts = ChatOptions::default();
    opts.extra
        .insert("x".into(), serde_json::json!({"a": ["b", 1]}));
    assert_eq!(
        render(src, &[], &opts).unwrap(),
        "None|True|{'a': ['b', 1]}|2.0|None"
    );
}

#[test]
fn tojson_like_hf() {
    let src = "{{ tools | tojson }}\n{{ tools[0] | tojson(indent=2) }}";
    let opts = ChatOptions {
        tools: Some(serde_json::json!([{"name": "get_weather", "description": "Météo <now>"}])),
        ..ChatOptions::default()
    };
    assert_eq!(
        render(src, &[], &opts).unwrap(),
        "[{\"name\": \"get_weather\", \"description\": \"Météo <now>\"}]\n{\n  \"name\": \"get_weather\",\n  \"description\": \"Météo <now>\"\n}"
    );
}

#[test]
fn python_string_methods_slices_namespace_and_loop() {
    let src = "{% set ns = namespace(n=0) %}{% for m in messages[1:] %}{% set ns.n = ns.n + 1 %}\
               {{ m.content.strip().upper() }}{% if not loop.last %},{% endif %}{% endfor %}\
               |{{ ns.n }}|{{ messages[0].content.startswith('sys') }}|{{ 'a b'.split() | length }}\
               |{{ bos_token }}{{ unk_token is defined }}";
    let msgs = [
        ChatMessage::system("sys"),
        ChatMessage::user(" hi "),
        ChatMessage::assistant("yo"),
    ];
    assert_eq!(
        render(src, &msgs, &ChatOptions::default()).unwrap(),
        "HI,YO|2|True|2|<s>False"
    );
}

#[test]
fn extra_fields_and_kwargs_reach_the_template() {
    let src = "{{ enable_thinking }}|{{ messages[0].tool_calls[0].name }}|{{ messages[0].name is defined }}";
    let mut m = ChatMessage::assistant("");
    m.tool_calls = Some(serde_json::json!([{"name": "f"}]));
    let mut opts = ChatOptions::default();
    opts.extra.insert("enable_thinking".into(), false.into());
    assert_eq!(render(src, &[m], &opts).unwrap(), "False|f|False");
}

#[test]
fn generation_tags_render_their_body() {
    let src =
        "{% for m in messages %}{% generation %}\n{{ m.content }}{%- endgeneration %}{% endfor %}";
    assert_eq!(
        render(
            src,
            &[ChatMessage::assistant("ok")],
            &ChatOptions::default()
        )
        .unwrap(),
        "ok"
    );
}

#[test]
fn strftime_now_reads_the_callers_clock_and_rejects_bad_formats() {
    let pinned = ChatOptions {
        now: chrono::NaiveDate::from_ymd_opt(2024, 7, 26).and_then(|d| d.and_hms_opt(9, 5, 3)),
        ..ChatOptions::default()
    };
    let src = "{{ strftime_now('%Y-%m-%d %H:%M:%S') }}|{{ strftime_now('%d %B %Y') }}";
    assert_eq!(
        render(src, &[], &pinned).unwrap(),
        "2024-07-26 09:05:03|26 July 2024"
    );
    // Without a pinned instant the local clock is read: some four-digit year.
    let out = render("{{ strftime_now('%Y') }}", &[], &ChatOptions::default()).unwrap();
    assert_eq!(out.len(), 4);
    assert!(out.chars().all(|c| c.is_ascii_digit()));
    assert!(render("{{ strftime_now('%Q%') }}", &[], &pinned).is_err());
}

#[test]
fn loop_controls_work() {
    let src = "{% for i in range(10) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}";
    assert_eq!(render(src, &[], &ChatOptions::default()).unwrap(), "02");
}

#[test]
fn doubling_a_string_is_stopped_by_the_fuel_long_before_gigabytes() {
    // Each pass doubles ns.s: 29 passes build a 512 MiB string (1 GiB allocated in all), which
    // the old budget (3.2 GB of data) let through. Now the data budget (256 MiB) stops it.
    let src = "{% set ns = namespace(s='x') %}{% for i in range(29) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}";
    let (kind, msg) = kind_of(render(src, &[], &ChatOptions::default()));
    assert_eq!(kind, TemplateErrorKind::LimitExceeded, "{msg}");
}

#[test]
fn rendered_prompt_is_capped() {
    // 20 MiB of output from a short loop over a 1 KiB message: cheap in fuel, over the cap.
    let src = "{% for i in range(20480) %}{{ messages[0].content }}{% endfor %}";
    let msgs = [ChatMessage::user("x".repeat(1024))];
    let (kind, msg) = kind_of(render(src, &msgs, &ChatOptions::default()));
    assert_eq!(kind, TemplateErrorKind::LimitExceeded, "{msg}");
    assert!(msg.contains("rendered prompt"), "{msg}");
    // Just under the cap renders.
    let src = "{% for i in range(8192) %}{{ messages[0].content }}{% endfor %}";
    let out = render(src, &msgs, &ChatOptions::default()).unwrap();
    assert_eq!(out.len(), 8 << 20);
}

#[test]
fn at_most_the_allowed_number_of_renders_run_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    let inside = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..4 * MAX_CONCURRENT_RENDERS)
        .map(|_| {
            let (inside, most) = (Arc::clone(&inside), Arc::clone(&most));
            std::thread::spawn(move || {
                let _permit = RenderPermit::acquire();
                let now = inside.fetch_add(1, Ordering::SeqCst) + 1;
                most.fetch_max(now, Ordering::SeqCst);
                std::thread::sleep(std::time::Duration::from_millis(20));
                inside.fetch_sub(1, Ordering::SeqCst);
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let most = most.load(Ordering::SeqCst);
    assert!((1..=MAX_CONCURRENT_RENDERS).contains(&most), "{most}");
}

#[test]
fn render_reports_the_fuel_it_burned() {
    let t = ChatTemplate::compile("{% for m in messages %}{{ m.content }}{% endfor %}").unwrap();
    let small = t
        .render_measured(
            &[ChatMessage::user("hi")],
            &ChatOptions::default(),
            &SpecialTokens::default(),
        )
        .unwrap();
    let msgs: Vec<_> = (0..100)
        .map(|_| ChatMessage::user("x".repeat(640)))
        .collect();
    let big = t
        .render_measured(&msgs, &ChatOptions::default(), &SpecialTokens::default())
        .unwrap();
    assert_eq!(small.text, "hi");
    // 64 KB written costs 1000 fuel on top of the loop's instructions.
    assert!(
        big.fuel >= small.fuel + 1000,
        "{} vs {}",
        big.fuel,
        small.fuel
    );
    assert!(big.fuel < FUEL / 100, "{}", big.fuel);
}

#[test]
fn overlapping_tag_delimiters_are_a_syntax_error_not_a_panic() {
    // Found by fuzz/fuzz_targets/chat_template.rs: `{%}` made the {% generation %} rewrite
    // slice its tag backwards.
    for src in ["{%}", "x{%}y", "{%}%}", "{%-}"] {
        let (kind, msg) = kind_of(ChatTemplate::compile(src).map(|_| String::new()));
        assert_eq!(kind, TemplateErrorKind::Syntax, "{src:?}: {msg}");
    }
    assert_eq!(
        render(
            "{% generation %}a{% endgeneration %}",
            &[],
            &ChatOptions::default()
        )
        .unwrap(),
        "a"
    );
}
