use super::*;
use crate::testutil::GgufBuilder;

fn sample() -> GgufBuilder {
    let mut b = GgufBuilder::new()
        .kv("general.architecture", GgufValue::String("llama".into()))
        .kv("llama.block_count", GgufValue::U32(30))
        .kv("llama.rope.freq_base", GgufValue::F32(10000.0))
        .kv("tokenizer.ggml.add_bos_token", GgufValue::Bool(false))
        .kv(
            "tokenizer.ggml.token_type",
            GgufValue::Array(vec![GgufValue::I32(3), GgufValue::I32(1)]),
        )
        .strs("tokenizer.ggml.tokens", &["<s>", "é"]);
    b.tensors
        .push(("token_embd.weight".into(), vec![576, 49152], 3, 0));
    b.tensors
        .push(("output_norm.weight".into(), vec![576], 0, 64));
    b.data_len = 128;
    b
}

fn parse(bytes: &[u8]) -> Result<GgufMetadata, GgufError> {
    parse_metadata(bytes, bytes.len() as u64)
}

#[test]
fn reads_header_kv_and_tensors() {
    let meta = parse(&sample().bytes()).expect("valid file");
    assert_eq!(meta.version, 3);
    assert_eq!(meta.get_str("general.architecture").unwrap(), "llama");
    assert_eq!(meta.get_u32("llama.block_count").unwrap(), 30);
    assert_eq!(meta.get_f32("llama.rope.freq_base").unwrap(), 10000.0);
    assert!(!meta.get_bool("tokenizer.ggml.add_bos_token").unwrap());
    assert_eq!(
        meta.get_str_array("tokenizer.ggml.tokens").unwrap(),
        vec!["<s>", "é"]
    );
    assert_eq!(
        meta.get_i64_array("tokenizer.ggml.token_type").unwrap(),
        vec![3, 1]
    );
    assert_eq!(meta.tensors.len(), 2);
    assert_eq!(meta.tensors[0].shape, vec![576, 49152]);
    assert_eq!(meta.tensors[1].offset, 64);
    assert_eq!(meta.data_offset % 32, 0);
}

#[test]
fn typed_getters_report_missing_and_wrong_types() {
    let meta = parse(&sample().bytes()).unwrap();
    assert!(matches!(
        meta.get_u32("nope"),
        Err(GgufError::MissingKey { .. })
    ));
    assert!(matches!(
        meta.get_u32("general.architecture"),
        Err(GgufError::WrongType {
            expected: "u32",
            found: "string",
            ..
        })
    ));
    assert_eq!(meta.opt_u32("nope").unwrap(), None);
}

#[test]
fn bad_magic_and_version() {
    let mut bytes = sample().bytes();
    bytes[0] = b'X';
    assert!(matches!(parse(&bytes), Err(GgufError::BadMagic { .. })));
    let mut b = sample();
    b.version = 1;
    assert!(matches!(
        parse(&b.bytes()),
        Err(GgufError::UnsupportedVersion { version: 1 })
    ));
}

#[test]
fn every_truncation_is_an_error() {
    let bytes = sample().bytes();
    // Cut inside the header, the kv section and the tensor table: each must fail cleanly.
    let header_end = bytes.len() - 128;
    for cut in (0..header_end).step_by(7) {
        let r = parse(&bytes[..cut]);
        assert!(r.is_err(), "truncated at {cut} parsed");
    }
}

#[test]
fn absurd_counts_are_rejected_before_allocating() {
    let mut bytes = sample().bytes();
    // Tensor count field (bytes 8..16) set to u64::MAX.
    bytes[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(matches!(
        parse(&bytes),
        Err(GgufError::AbsurdCount { what: "tensor", .. })
    ));

    // A string array claiming 2^40 elements.
    let mut b = GgufBuilder::new().kv("x", GgufValue::Array(vec![GgufValue::String("a".into())]));
    b.data_len = 0;
    let mut bytes = b.bytes();
    let count_at = 4 + 4 + 8 + 8 + 8 + 1 + 4 + 4; // header, key "x", value type, element type
    bytes[count_at..count_at + 8].copy_from_slice(&(1u64 << 40).to_le_bytes());
    assert!(matches!(
        parse(&bytes),
        Err(GgufError::AbsurdCount {
            what: "array element",
            ..
        })
    ));
}

#[test]
fn huge_string_length_is_truncation_not_allocation() {
    let b = GgufBuilder::new().kv("k", GgufValue::String("v".into()));
    let mut bytes = b.bytes();
    let len_at = 4 + 4 + 8 + 8 + 8 + 1 + 4;
    bytes[len_at..len_at + 8].copy_from_slice(&(u64::MAX / 2).to_le_bytes());
    assert!(matches!(parse(&bytes), Err(GgufError::Truncated { .. })));
}

#[test]
fn tensor_offset_past_end_is_rejected() {
    let mut b = sample();
    b.tensors[1].3 = 1 << 40;
    assert!(matches!(
        parse(&b.bytes()),
        Err(GgufError::BadTensor { .. })
    ));
}

#[test]
fn read_metadata_names_missing_file() {
    let err = read_metadata(Path::new("/nonexistent/model.gguf")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/model.gguf"), "{err}");
}

#[test]
fn metadata_arrays_are_bounded_by_memory_not_by_count() {
    // 2^30 one-byte bools: the file (a gigabyte of zeros after the header) holds them, but as
    // 2^30 `GgufValue`s they would take 32 GiB. Refused before allocating anything.
    let b = GgufBuilder::new().kv("x", GgufValue::Array(vec![GgufValue::Bool(true)]));
    let mut bytes = b.bytes();
    let count_at = 4 + 4 + 8 + 8 + 8 + 1 + 4 + 4; // header, key "x", value type, element type
    bytes[count_at..count_at + 8].copy_from_slice(&(1u64 << 30).to_le_bytes());
    let file_len = bytes.len() as u64 + (1 << 30);
    let reader = std::io::Read::chain(&bytes[..], std::io::repeat(0));
    let r = parse_metadata(reader, file_len);
    assert!(
        matches!(r, Err(GgufError::TooLarge { .. })),
        "{:?}",
        r.map(|m| m.kv.len())
    );
}

#[test]
fn tensor_data_is_checked_against_the_file() {
    // sample(): Q4_1 [576, 49152] is 17 MB; the file holds 128 bytes of data.
    let meta = parse(&sample().bytes()).unwrap();
    assert_eq!(meta.tensors[0].byte_size(), Some(576 * 49152 / 32 * 20));
    assert!(matches!(
        meta.check_tensor_data(),
        Err(GgufError::BadTensor { name, .. }) if name == "token_embd.weight"
    ));

    let file = |tensors: Vec<(&str, Vec<u64>, u32, u64)>| {
        let mut b = GgufBuilder::new();
        b.tensors = tensors
            .into_iter()
            .map(|(n, s, t, o)| (n.to_string(), s, t, o))
            .collect();
        b.data_len = 128;
        parse(&b.bytes()).unwrap()
    };
    // Q4_1 [64, 2]: 4 blocks of 20 bytes; F32 [8] at 96: 32 bytes, ending exactly at the end.
    let ok = file(vec![("a", vec![64, 2], 3, 0), ("b", vec![8], 0, 96)]);
    ok.check_tensor_data().unwrap();
    for (what, t) in [
        ("one byte past the end", ("b", vec![9], 0, 96)),
        (
            "2^62 floats wrap to 0 bytes",
            ("b", vec![1 << 21, 1 << 21, 1 << 20], 0, 0),
        ),
        ("starts at the end of the file", ("b", vec![8], 0, 128)),
        ("row splits a block", ("b", vec![40], 8, 0)),
        ("unknown type", ("b", vec![8], 4, 0)),
        ("five dimensions", ("b", vec![1, 1, 1, 1, 2], 0, 0)),
        ("unaligned offset", ("b", vec![2], 0, 4)),
    ] {
        let meta = file(vec![t]);
        assert!(
            matches!(meta.check_tensor_data(), Err(GgufError::BadTensor { .. })),
            "{what} passed"
        );
    }
}

#[test]
fn ordinary_arrays_stay_within_the_memory_budget() {
    // 300k tokens (a large real vocabulary) parse fine.
    let tokens: Vec<String> = (0..300_000).map(|i| format!("tok{i}")).collect();
    let refs: Vec<&str> = tokens.iter().map(String::as_str).collect();
    let b = GgufBuilder::new().strs("tokenizer.ggml.tokens", &refs);
    let meta = parse(&b.bytes()).unwrap();
    assert_eq!(
        meta.get_str_array("tokenizer.ggml.tokens").unwrap().len(),
        300_000
    );
}
