//! `fhircast::Event::parse`: the body of every publish, as both editions
//! read it. Any input must give `Ok` or a `ValidationError`, never a panic;
//! an accepted event must answer its accessors (they `expect` the shape
//! `parse` checked).
#![no_main]

use fhircast::{Event, Version};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for version in [Version::Stu3, Version::Stu2] {
        if let Ok(mut event) = Event::parse(data, version) {
            let _ = event.name.kind();
            assert!(!event.id.is_empty() && !event.topic.is_empty());
            let _ = event.context().len();
            let _ = event.event().len();
            let _ = event.event_mut().len();
        }
    }
});
