//! `fhircast::SubscriptionRequest::from_form`: the body of every subscribe
//! and unsubscribe POST.
#![no_main]

use fhircast::{Mode, SubscriptionRequest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(request) = SubscriptionRequest::from_form(data) {
        assert!(!request.topic.is_empty());
        assert!(request.topic.len() <= 256);
        if request.mode == Mode::Subscribe {
            assert!(!request.events.is_empty());
        }
        let _ = request.events.to_string();
    }
});
