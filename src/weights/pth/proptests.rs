//! Property tests: views written by our own pickle writer ([`super::write::Pickle`]) read
//! back by the reader, over random shapes, strides, offsets and storage dtypes (the round
//! trip the reader's promise rests on), and views that reach past their storage refused,
//! never read out of bounds or panicking.

use half::{bf16, f16};
use proptest::prelude::*;

use super::testing::one;

/// The storage classes and how each stores a small integer (0..=100 is exact in all of them).
const CLASSES: [&str; 9] = [
    "FloatStorage",
    "DoubleStorage",
    "HalfStorage",
    "BFloat16Storage",
    "LongStorage",
    "IntStorage",
    "ShortStorage",
    "CharStorage",
    "ByteStorage",
];

fn encode(class: &str, values: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for &v in values {
        match class {
            "FloatStorage" => out.extend(f32::from(v).to_le_bytes()),
            "DoubleStorage" => out.extend(f64::from(v).to_le_bytes()),
            "HalfStorage" => out.extend(f16::from_f32(f32::from(v)).to_le_bytes()),
            "BFloat16Storage" => out.extend(bf16::from_f32(f32::from(v)).to_le_bytes()),
            "LongStorage" => out.extend(i64::from(v).to_le_bytes()),
            "IntStorage" => out.extend(i32::from(v).to_le_bytes()),
            "ShortStorage" => out.extend(i16::from(v).to_le_bytes()),
            "CharStorage" => out.push(v),
            "ByteStorage" => out.push(v),
            _ => unreachable!("not in CLASSES"),
        }
    }
    out
}

/// The values of the view in row-major order of its shape, from the storage directly.
fn expected(storage: &[u8], offset: usize, shape: &[usize], stride: &[usize]) -> Vec<f32> {
    let numel: usize = shape.iter().product();
    (0..numel)
        .map(|flat| {
            let (mut rest, mut at) = (flat, offset);
            for (&d, &s) in shape.iter().zip(stride).rev() {
                at += (rest % d) * s;
                rest /= d;
            }
            f32::from(storage[at])
        })
        .collect()
}

fn view() -> impl Strategy<Value = (usize, Vec<(usize, usize)>, usize, usize)> {
    // (class index, [(dim, stride)], offset, spare elements past the view's end)
    (
        0..CLASSES.len(),
        prop::collection::vec((1usize..5, 0usize..7), 0..5),
        0usize..6,
        0usize..4,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_view_reads_back_as_written((class, dims, offset, spare) in view()) {
        let class_name = CLASSES[class];
        let shape: Vec<usize> = dims.iter().map(|d| d.0).collect();
        let stride: Vec<usize> = dims.iter().map(|d| d.1).collect();
        let span = offset + shape.iter().zip(&stride).map(|(d, s)| (d - 1) * s).sum::<usize>() + 1;
        let numel = span + spare;
        let storage: Vec<u8> = (0..numel).map(|i| (i % 101) as u8).collect();
        let to_i32 = |v: &[usize]| v.iter().map(|&x| x as i32).collect::<Vec<_>>();
        let (shape_i, stride_i) = (to_i32(&shape), to_i32(&stride));
        let file = one(class_name, numel as i32, (offset as i32, &shape_i, &stride_i), &encode(class_name, &storage))
            .map_err(|e| TestCaseError::fail(format!("{class_name} {shape:?}/{stride:?}+{offset}: {e}")))?;
        let read = file.read_f32("w")
            .map_err(|e| TestCaseError::fail(format!("{class_name} {shape:?}/{stride:?}+{offset}: {e}")))?;
        prop_assert_eq!(read, expected(&storage, offset, &shape, &stride));
    }

    #[test]
    fn a_view_past_its_storage_is_refused((class, dims, offset, _) in view(), short in 1usize..4) {
        let class_name = CLASSES[class];
        let shape: Vec<i32> = dims.iter().map(|d| d.0 as i32).collect();
        let stride: Vec<i32> = dims.iter().map(|d| d.1 as i32).collect();
        let span = offset + dims.iter().map(|(d, s)| (d - 1) * s).sum::<usize>() + 1;
        // The storage claims and holds fewer elements than the view reaches.
        let numel = span.saturating_sub(short);
        let storage: Vec<u8> = vec![1; numel];
        let outcome = one(class_name, numel as i32, (offset as i32, &shape, &stride), &encode(class_name, &storage))
            .and_then(|f| f.read_f32("w"));
        prop_assert!(outcome.is_err(), "{} {:?}/{:?}+{} over {} elements was read", class_name, shape, stride, offset, numel);
    }
}
