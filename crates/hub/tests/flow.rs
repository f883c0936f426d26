//! The basic lifecycle end to end: subscribe, connect, publish, receive, ACK,
//! Get Current Context, unsubscribe, shutdown.

mod common;

use common::*;

/// Checklist 8, 22, 26, 27, 41, 42, 60, 63, 64, 65, 86-89, 38, 39.
#[tokio::test]
async fn subscribe_publish_receive_unsubscribe() {
    let hub = TestHub::start().await;
    let topic = topic();
    let mut ris = hub.join(&topic, "Patient-open,Patient-close", "RIS").await;
    let mut pacs = hub.join(&topic, "patient-open", "PACS").await;

    let open = patient_open(&topic, "p1");
    let answer = hub.publish_ok(&open).await;
    let version = answer["event"]["event"]["context.versionId"]
        .as_str()
        .unwrap()
        .to_owned();

    for ws in [&mut ris, &mut pacs] {
        let got = ws.next_event().await;
        assert_eq!(got["id"], open["id"], "same id as the request (64)");
        assert_eq!(got["timestamp"], open["timestamp"], "same timestamp (65)");
        assert_eq!(got["event"]["context"], open["event"]["context"]);
        assert_eq!(got["event"]["context.versionId"], version.as_str());
    }

    let current = hub.context(&topic).await;
    assert_eq!(current["context.type"], "Patient");
    assert_eq!(current["context.versionId"], version.as_str());

    let res = hub.unsubscribe(&topic, &ris.endpoint).await;
    assert_eq!(res.status(), 202);
    let (texts, close) = ris.closed().await;
    assert_eq!(texts[0]["hub.mode"], "denied");
    assert_eq!(close.map(|c| u16::from(c.code)), Some(1000));

    hub.stop().await;
    let (_, close) = pacs.closed().await;
    assert_eq!(
        close.map(|c| u16::from(c.code)),
        Some(1001),
        "shutdown closes with 1001"
    );
}
