//! What one context save costs, outside the hub: the hub's path (`serde_json::to_value` of the
//! topic's stack, then `Value::to_string`, then dropping the tree, as `persist::save_contexts`
//! and `Storage::save_contexts` do) against `serde_json::to_string` of the same data.
//!
//! Input: a saved stack, e.g. from a hub that ran `fhircast-load --patients 64`:
//!
//! ```sh
//! sqlite3 "$DATA_DIR/lockstep.db" "select state_json from contexts" > stack.json
//! cargo run --release -p lockstep-bench --example context_save -- stack.json
//! ```
//!
//! The stack is loaded as a `serde_json::Value`; in the hub most of it (each context's
//! `open_message`) is a `Value` too, so both paths do the same work here as there.

use std::time::Instant;

fn main() {
    let path = std::env::args()
        .nth(1)
        .expect("usage: context_save STACK.json");
    let text = std::fs::read_to_string(&path).expect("read the stack");
    let stack: serde_json::Value = serde_json::from_str(&text).expect("stack is JSON");
    let contexts = stack["open"].as_array().map_or(0, Vec::len);
    println!("{path}: {} bytes, {contexts} open contexts", text.len());
    let n = 2000;
    let mut bytes = 0;
    for round in 1..=3 {
        let t = Instant::now();
        for _ in 0..n {
            let tree = serde_json::to_value(&stack).unwrap();
            bytes += tree.to_string().len();
        }
        let hub_path = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        let t = Instant::now();
        for _ in 0..n {
            bytes += serde_json::to_string(&stack).unwrap().len();
        }
        let direct = t.elapsed().as_secs_f64() * 1e6 / n as f64;
        println!(
            "round {round}: to_value + to_string + drop {hub_path:.1} µs, to_string {direct:.1} µs ({:.1}x)",
            hub_path / direct
        );
    }
    std::hint::black_box(bytes);
}
