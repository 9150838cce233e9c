//! `POST /v1/events`: envelopes reach the intake queue untouched, and intake accepts them;
//! what the door can judge itself is refused with a reason.

use std::sync::Arc;
use std::time::Duration;

use worldfleet_domain::names::LEDGER_TABLE;
use worldfleet_kit::StageHandler;
use worldfleet_ports::Key;

use crate::common::{GATEWAY, fixture, fixture_with, sample};

const KINDS: [&str; 4] = ["dialogue", "action", "combat", "quest"];

#[tokio::test]
async fn one_envelope_is_queued_byte_for_byte_with_partition_group_and_event_id_dedup() {
    let fixture = fixture().await;
    let body = sample("dialogue");
    let (status, answer) = fixture
        .call_json(fixture.signed("POST", "/v1/events", body.as_bytes()))
        .await;
    assert_eq!(status, 202, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    assert_eq!(results[0]["status"], "queued", "{answer}");
    let messages = fixture.intake_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(results[0]["message_id"], messages[0].message_id.as_str());
    let envelope: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&messages[0].body).unwrap(),
        envelope
    );
    assert_eq!(messages[0].body, body.trim(), "forwarded as sent");
    assert_eq!(
        messages[0].group_id.as_deref(),
        envelope["partition"].as_str()
    );
}

#[tokio::test]
async fn an_array_is_queued_in_order_and_intake_accepts_every_sample() {
    let fixture = fixture().await;
    let envelopes: Vec<String> = KINDS.iter().map(|kind| sample(kind)).collect();
    let body = format!("[{}]", envelopes.join(","));
    let (status, answer) = fixture
        .call_json(fixture.signed("POST", "/v1/events", body.as_bytes()))
        .await;
    assert_eq!(status, 202, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results.len(), KINDS.len());
    assert!(
        results.iter().all(|result| result["status"] == "queued"),
        "{answer}"
    );
    let messages = fixture.intake_messages().await;
    assert_eq!(messages.len(), KINDS.len());

    // The real intake stage takes what the door queued: every sample reaches the ledger.
    let intake = crate::common::intake(&fixture).await;
    let report = intake
        .handle_batch(&messages, Duration::from_secs(30))
        .await;
    assert!(report.all_succeeded(), "{report:?}");
    for envelope in &envelopes {
        let envelope: serde_json::Value = serde_json::from_str(envelope).unwrap();
        let key = Key::new(
            envelope["partition"].as_str().unwrap(),
            envelope["event_id"].as_str().unwrap(),
        );
        assert!(
            fixture
                .table
                .get(LEDGER_TABLE, &key)
                .await
                .unwrap()
                .is_some(),
            "{key} not in the ledger"
        );
    }
}

#[tokio::test]
async fn a_bad_envelope_is_queued_for_intake_to_refuse_not_judged_by_the_door() {
    let fixture = fixture().await;
    // Wrong version, no partition, no event id: intake's business, not the door's.
    let body = format!(r#"{{"v": 7, "gateway": "{GATEWAY}"}}"#);
    let (status, answer) = fixture
        .call_json(fixture.signed("POST", "/v1/events", body.as_bytes()))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["results"][0]["status"], "queued");
    let messages = fixture.intake_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body, body);
}

#[tokio::test]
async fn the_door_refuses_oversized_envelopes_and_non_objects_one_by_one() {
    let fixture = fixture().await;
    let oversized = format!(r#"{{"text": "{}"}}"#, "x".repeat(70 * 1024));
    let body = format!("[{}, 42, {}]", sample("combat"), oversized);
    let (status, answer) = fixture
        .call_json(fixture.signed("POST", "/v1/events", body.as_bytes()))
        .await;
    assert_eq!(status, 202, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "queued");
    assert_eq!(results[1]["status"], "refused");
    assert_eq!(results[1]["reason"], "malformed");
    assert_eq!(results[2]["status"], "refused");
    assert_eq!(results[2]["reason"], "oversized");
    assert!(results[2]["message"].as_str().unwrap().contains("65536"));
    assert_eq!(fixture.intake_messages().await.len(), 1);
}

#[tokio::test]
async fn whole_body_problems_get_a_status_and_a_json_reason() {
    let fixture = fixture().await;
    let many = format!("[{}]", vec!["{}"; 101].join(","));
    for (body, status, code) in [
        ("{not json", 400, "not_json"),
        ("", 400, "not_json"),
        ("[]", 400, "empty_batch"),
        ("\"just a string\"", 400, "not_envelope"),
        (many.as_str(), 400, "too_many_envelopes"),
    ] {
        let (got, answer) = fixture
            .call_json(fixture.signed("POST", "/v1/events", body.as_bytes()))
            .await;
        assert_eq!(got, status, "{body:.40}: {answer}");
        assert_eq!(answer["error"], code, "{body:.40}: {answer}");
        assert!(
            answer["message"]
                .as_str()
                .is_some_and(|text| !text.is_empty())
        );
    }
    assert!(fixture.intake_messages().await.is_empty());
}

#[tokio::test]
async fn a_wrong_content_type_is_415() {
    let fixture = fixture().await;
    let body = sample("quest");
    let mut request = fixture.signed("POST", "/v1/events", body.as_bytes());
    request
        .headers_mut()
        .insert("content-type", "text/plain".parse().unwrap());
    let (status, answer) = fixture.call_json(request).await;
    assert_eq!(status, 415, "{answer}");
    assert_eq!(answer["error"], "unsupported_media_type");
    let mut request = fixture.signed("POST", "/v1/events", body.as_bytes());
    request.headers_mut().remove("content-type");
    assert_eq!(fixture.call_json(request).await.0, 415);
    assert!(fixture.intake_messages().await.is_empty());
}

#[tokio::test]
async fn a_body_over_the_cap_is_413_whether_or_not_it_says_its_length() {
    let config = worldfleet_serve::ServeConfig {
        max_body_bytes: 1024,
        ..worldfleet_serve::ServeConfig::default()
    };
    let fixture = fixture_with(config).await;
    let body = format!("[{}]", vec![sample("action"); 3].join(","));
    let mut request = fixture.signed("POST", "/v1/events", body.as_bytes());
    request
        .headers_mut()
        .insert("content-length", body.len().to_string().parse().unwrap());
    let (status, answer) = fixture.call_json(request).await;
    assert_eq!(status, 413, "{answer}");
    assert_eq!(answer["error"], "body_too_large");
    // No Content-Length: the cap holds while reading.
    let (status, answer) = fixture
        .call_json(fixture.signed("POST", "/v1/events", body.as_bytes()))
        .await;
    assert_eq!(status, 413, "{answer}");
    assert!(fixture.intake_messages().await.is_empty());
}

/// Runs the real intake stage over the intake queue until the returned sender fires.
async fn intake_running(fixture: &crate::common::Fixture) -> tokio::sync::oneshot::Sender<()> {
    let intake = crate::common::intake(fixture).await;
    let queue = Arc::clone(&fixture.queue);
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        while stopped.try_recv().is_err() {
            let batch = queue
                .receive(
                    worldfleet_domain::names::INTAKE_QUEUE,
                    worldfleet_ports::ReceiveRequest::batch(Duration::from_millis(50)),
                )
                .await
                .unwrap();
            if batch.is_empty() {
                continue;
            }
            intake.handle_batch(&batch, Duration::from_secs(30)).await;
            queue
                .delete_batch(
                    worldfleet_domain::names::INTAKE_QUEUE,
                    batch
                        .into_iter()
                        .map(|message| message.receipt_handle)
                        .collect(),
                )
                .await
                .unwrap();
        }
    });
    stop
}

#[tokio::test]
async fn wait_decided_answers_with_intakes_verdict_per_envelope() {
    let fixture = fixture().await;
    let _intake = intake_running(&fixture).await;
    let good = sample("dialogue");
    let mut forged: serde_json::Value = serde_json::from_str(&sample("combat")).unwrap();
    forged["signature"] = serde_json::Value::from("00".repeat(32));
    let body = format!("[{good},{forged}]");
    let (status, answer) = fixture
        .call_json(fixture.signed("POST", "/v1/events?wait=decided", body.as_bytes()))
        .await;
    assert_eq!(status, 202, "{answer}");
    let results = answer["results"].as_array().unwrap();
    assert_eq!(results[0]["status"], "queued");
    assert_eq!(results[0]["decision"]["status"], "accepted", "{answer}");
    assert!(results[0]["decision"]["accepted_at_ms"].as_u64().unwrap() > 0);
    assert_eq!(results[1]["decision"]["status"], "refused", "{answer}");
    assert_eq!(results[1]["decision"]["reason"], "bad_signature");
    assert!(
        results[1]["decision"]["message"]
            .as_str()
            .unwrap()
            .contains("HMAC")
    );
    // The accepted envelope posted again inside the queue's 5-minute deduplication window: the
    // queue answers with the first message's id, so the verdict is that message's, accepted.
    let (_, again) = fixture
        .call_json(fixture.signed("POST", "/v1/events?wait=decided", good.as_bytes()))
        .await;
    assert_eq!(
        again["results"][0]["decision"]["status"], "accepted",
        "{again}"
    );
}

#[tokio::test]
async fn wait_decided_says_pending_when_intake_has_not_decided_in_time() {
    let fixture = fixture().await;
    let (status, answer) = fixture
        .call_json(fixture.signed(
            "POST",
            "/v1/events?wait=decided&wait_ms=100",
            sample("quest").as_bytes(),
        ))
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(
        answer["results"][0]["decision"]["status"], "pending",
        "{answer}"
    );
    // Without the parameter, no decision at all.
    let (_, plain) = fixture
        .call_json(fixture.signed("POST", "/v1/events", sample("action").as_bytes()))
        .await;
    assert!(plain["results"][0].get("decision").is_none(), "{plain}");
}

#[tokio::test]
async fn bad_wait_parameters_are_400() {
    let fixture = fixture().await;
    for uri in [
        "/v1/events?wait=soon",
        "/v1/events?wait=decided&wait_ms=0",
        "/v1/events?wait=decided&wait_ms=60000",
        "/v1/events?wait_ms=100",
        "/v1/events?wait=decided&wait_ms=x",
    ] {
        let (status, answer) = fixture
            .call_json(fixture.signed("POST", uri, sample("quest").as_bytes()))
            .await;
        assert_eq!(status, 400, "{uri}: {answer}");
        assert_eq!(answer["error"], "bad_parameter", "{uri}");
    }
    assert!(fixture.intake_messages().await.is_empty(), "nothing queued");
}

/// A queue that fails its second `send_batch` call, as a store that crashed mid-request would.
struct SecondSendFails {
    inner: Arc<dyn worldfleet_ports::Queue>,
    sends: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl worldfleet_ports::Queue for SecondSendFails {
    async fn ensure_queue(
        &self,
        spec: &worldfleet_ports::QueueSpec,
    ) -> worldfleet_ports::Result<()> {
        self.inner.ensure_queue(spec).await
    }

    async fn send_batch(
        &self,
        queue: &str,
        messages: Vec<worldfleet_ports::OutgoingMessage>,
    ) -> worldfleet_ports::Result<Vec<worldfleet_ports::SendOutcome>> {
        if self.sends.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            return Err(worldfleet_ports::Error::Unavailable(
                "the second send fails".into(),
            ));
        }
        self.inner.send_batch(queue, messages).await
    }

    async fn receive(
        &self,
        queue: &str,
        request: worldfleet_ports::ReceiveRequest,
    ) -> worldfleet_ports::Result<Vec<worldfleet_ports::ReceivedMessage>> {
        self.inner.receive(queue, request).await
    }

    async fn delete_batch(
        &self,
        queue: &str,
        receipt_handles: Vec<String>,
    ) -> worldfleet_ports::Result<Vec<worldfleet_ports::DeleteOutcome>> {
        self.inner.delete_batch(queue, receipt_handles).await
    }

    async fn change_visibility(
        &self,
        queue: &str,
        receipt_handle: &str,
        timeout: Duration,
    ) -> worldfleet_ports::Result<()> {
        self.inner
            .change_visibility(queue, receipt_handle, timeout)
            .await
    }

    async fn depth(&self, queue: &str) -> worldfleet_ports::Result<worldfleet_ports::QueueDepth> {
        self.inner.depth(queue).await
    }
}

#[tokio::test]
async fn after_a_failed_send_nothing_later_is_queued_so_a_resend_keeps_partition_order() {
    let mut fixture = fixture().await;
    let failing: Arc<dyn worldfleet_ports::Queue> = Arc::new(SecondSendFails {
        inner: Arc::clone(&fixture.queue),
        sends: Default::default(),
    });
    let state = worldfleet_serve::ServeState::new(
        failing,
        Arc::clone(&fixture.table),
        Arc::new(fixture.clock.clone()),
        crate::common::keys(),
        worldfleet_serve::ServeConfig::default(),
    );
    fixture.app = worldfleet_serve::app(state);
    // 25 envelopes of one partition: three sends of up to ten, the second of which fails.
    let sample = sample("dialogue");
    let envelopes: Vec<String> = (0..25)
        .map(|index| {
            sample.replace(
                "01JD3Q7Z8X9Y0A1B2C3D4E5F60",
                &format!("01JD3Q7Z8X9Y0A1B2C3D4E5F{index:02}"),
            )
        })
        .collect();
    let body = format!("[{}]", envelopes.join(","));
    let (status, answer) = fixture
        .call_json(fixture.signed("POST", "/v1/events", body.as_bytes()))
        .await;
    assert_eq!(status, 503, "{answer}");
    let statuses: Vec<&str> = answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|result| result["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses[..10], ["queued"; 10]);
    assert_eq!(statuses[10..], ["failed"; 15], "{answer}");
    assert!(
        answer["results"][24]["message"]
            .as_str()
            .unwrap()
            .contains("order within a partition"),
        "{answer}"
    );
    let queued = fixture.intake_messages().await;
    assert_eq!(queued.len(), 10, "the third send was never made");
}
