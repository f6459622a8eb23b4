//! The CPU kernels and the shim trust nothing they are handed (issue 11, item 5): sizes that
//! would divide by zero or overflow, and slot tables that point outside the KV pool, are
//! refused when the op is built, before any kernel runs. None of these arrays is evaluated.
use cortex_mlx::{ops, Array, Dtype};

fn f32s(shape: &[i32]) -> Array {
    let n: i32 = shape.iter().product();
    Array::from_slice(&vec![0.5f32; n as usize], shape).unwrap()
}

#[test]
fn qgemv_refuses_zero_group_size_empty_rows_and_overflowing_widths() {
    let empty = |shape: &[i32], dtype| Array::zeros(shape, dtype).unwrap();
    // k = 0 with group_size 0 (or -8) passed every check, then divided by zero in the kernel.
    for group in [0, -8] {
        let r = ops::qgemv_cpu(
            &empty(&[1, 0], Dtype::Float32),
            &empty(&[4, 0], Dtype::Uint32),
            &empty(&[4, 0], Dtype::Float32),
            &empty(&[4, 0], Dtype::Float32),
            group,
            4,
        );
        assert!(r.is_err(), "group_size {group} accepted");
    }
    let r = ops::gemv_cpu(
        &empty(&[1, 0], Dtype::Float32),
        &empty(&[4, 0], Dtype::Float32),
    );
    assert!(r.is_err(), "gemv with k = 0 accepted");
    // (2^27 + 1) packed words x 32 / 4 bits wraps to 8 in int32: a [1, 8] input "matched" a
    // 512 MB weight row. (Lazy zeros: nothing is allocated.)
    let r = ops::qgemv_cpu(
        &f32s(&[1, 8]),
        &empty(&[1, (1 << 27) + 1], Dtype::Uint32),
        &f32s(&[1, 1]),
        &f32s(&[1, 1]),
        8,
        4,
    );
    assert!(r.is_err(), "an overflowing packed width accepted");
}

#[test]
fn shapes_whose_element_count_overflows_are_refused() {
    let huge = [65536, 65536, 65536, 65536]; // 2^64 elements: wraps to 0
    assert!(
        Array::from_bytes(&[], &huge, Dtype::Uint8).is_err(),
        "from_bytes"
    );
    assert!(Array::zeros(&huge, Dtype::Float32).is_err(), "zeros");
    let none = Array::from_slice::<f32>(&[], &[0]).unwrap();
    assert!(none.reshape(&huge).is_err(), "reshape");
    let one = Array::scalar(1.0f32).unwrap();
    assert!(one.broadcast_to(&huge).is_err(), "broadcast_to");
    // 2^31 x 2^31 float32s: 2^64 bytes
    assert!(Array::zeros(&[1 << 30, 1 << 30, 4], Dtype::Float32).is_err());
    // ordinary shapes still work, and reshape still infers -1
    let a = f32s(&[2, 3]);
    assert_eq!(a.reshape(&[-1]).unwrap().shape(), vec![6]);
    assert!(a.reshape(&[-1, -1]).is_err());
    assert!(Array::from_bytes(&[0; 8], &[2, -1], Dtype::Float32).is_err());
}

#[test]
fn decode_attention_checks_positions_and_slots_against_the_storage() {
    let (slots, hkv, d) = (4, 1, 8);
    let pool = f32s(&[slots, hkv, d]);
    let (q, kv) = (f32s(&[1, 1, d]), f32s(&[1, 1, d]));
    let inv = f32s(&[d / 2]);
    fn step<'a>(
        q: &'a Array,
        kv: &'a Array,
        inv: &'a Array,
        pos: &'a Array,
    ) -> ops::DecodeStep<'a> {
        ops::DecodeStep {
            q,
            k: kv,
            v: kv,
            positions: pos,
            head_dim: q.dim(-1),
            rope: ops::RopeTable {
                inv_freq: inv,
                dims: q.dim(-1),
                traditional: false,
                scale: 1.0,
                input_scale: 1.0,
            },
            scale: 0.5,
            softcap: 0.0,
            window: 0,
        }
    }
    let ints = |v: &[i32]| Array::from_slice(v, &[v.len() as i32]).unwrap();
    let paged = |table: &[i32], position: i32, write: i32| {
        let pos = ints(&[position]);
        ops::decode_attention(
            &step(&q, &kv, &inv, &pos),
            ops::KvStorage::Paged {
                keys: &pool,
                values: &pool,
                write: &ints(&[write]),
                table: &Array::from_slice(table, &[1, table.len() as i32]).unwrap(),
            },
        )
    };
    let (ok, _, _) = paged(&[3, 0, 1, 2], 1, 0).unwrap();
    assert_eq!(ok.to_vec::<f32>().unwrap().len(), d as usize);
    // Padding past the position is never read, so it may be anything.
    paged(&[3, 1, 1 << 30, -5], 1, 1).unwrap();
    for (what, table, position, write) in [
        ("slot == pool size", [slots, 0, 0, 0], 0, 0),
        ("slot far past the pool", [1 << 20, 0, 0, 0], 0, 0),
        ("negative slot", [-1, 0, 0, 0], 0, 0),
        ("write slot past the pool", [0, 1, 2, 3], 0, slots),
        ("negative write slot", [0, 1, 2, 3], 0, -1),
        ("position past the table", [0, 1, 2, 3], 4, 0),
        ("negative position", [0, 1, 2, 3], -1, 0),
    ] {
        assert!(paged(&table, position, write).is_err(), "{what} accepted");
    }
    // One sequence: the position must lie within the buffer.
    let cache = f32s(&[1, hkv, 6, d]);
    let sequence = |position: i32| {
        let pos = ints(&[position]);
        ops::decode_attention(
            &step(&q, &kv, &inv, &pos),
            ops::KvStorage::Sequence {
                keys: &cache,
                values: &cache,
            },
        )
    };
    sequence(5).unwrap();
    assert!(sequence(6).is_err(), "position == capacity accepted");
    assert!(sequence(-1).is_err(), "negative position accepted");
}

#[test]
fn to_vec_copies_exactly_its_elements() {
    let v: Vec<u16> = (0..7).collect();
    assert_eq!(
        Array::from_slice(&v, &[7])
            .unwrap()
            .to_vec::<u16>()
            .unwrap(),
        v
    );
    let v: Vec<f64> = vec![1.5, -2.0, 3.25];
    let a = Array::from_slice(&v, &[3]).unwrap();
    assert_eq!(a.to_vec::<f64>().unwrap(), v);
    assert!(a.to_vec::<f32>().is_err(), "dtype mismatch");
    let v: Vec<i8> = vec![-1, 2, -3];
    assert_eq!(
        Array::from_slice(&v, &[3]).unwrap().to_vec::<i8>().unwrap(),
        v
    );
}
