//! `fhircast::Content::apply`: the `updates` Bundle of every `*-update`.
//! Any JSON must give `Ok` or a `ContentError`, never a panic. A bundle
//! that applied once to empty content holds only PUTs of distinct
//! resources, so applying it again must succeed and change nothing
//! (a client retrying an update must not be refused).
#![no_main]

use fhircast::Content;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(bundle) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(once) = Content::default().apply(&bundle, &[]) else {
        return;
    };
    let keys: Vec<_> = once.keys().cloned().collect();
    let twice = once
        .apply(&bundle, &keys)
        .expect("a bundle that applied once applies again");
    assert_eq!(twice.keys().cloned().collect::<Vec<_>>(), keys);
    let snapshot = twice.to_bundle("fuzz");
    // FHIR JSON has no empty arrays: empty content has no `entry` at all.
    assert_eq!(
        snapshot.get("entry").map(|e| e.as_array().expect("an array").len()),
        (!keys.is_empty()).then_some(keys.len())
    );
});
