//! The reference signer (`scripts/sign_envelope.py --request`) and the server agree; and, where
//! Python has boto3, a boto3 gateway posts to the SQS-compatible endpoint unchanged.

use std::path::PathBuf;
use std::process::Command;

use axum::body::Body;
use axum::http::Request;
use tokio::net::TcpListener;
use worldfleet_ports::{Clock, SystemClock};
use worldfleet_serve::sign_request;

use crate::common::{GATEWAY, SAMPLE_KEY_HEX, fixture, key, sample};

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/sign_envelope.py")
}

fn python_has(module: &str) -> bool {
    Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .output()
        .is_ok_and(|output| output.status.success())
}

/// Printed by `sign_envelope.py --request gw-sample KEY GET '/v1/feeds/player:p-1?after=3'
/// --timestamp 42`: the same bytes in both languages, pinned so the check runs without Python.
#[test]
fn the_rust_signature_matches_the_python_signers_pinned_output() {
    assert_eq!(
        sign_request(&key(), "GET", "/v1/feeds/player:p-1?after=3", 42, b""),
        "b83192eddcc1f135ad41ae0090c960b7d47e3f1ed36bbd68470f156d07503762"
    );
}

#[tokio::test]
async fn headers_from_the_python_signer_are_accepted() {
    if !python_has("hashlib") {
        eprintln!("skipped: no python3");
        return;
    }
    let fixture = fixture().await;
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("body.json");
    let body = format!("[{}]", sample("quest"));
    std::fs::write(&body_path, &body).unwrap();
    let output = Command::new("python3")
        .arg(script())
        .args(["--request", GATEWAY, SAMPLE_KEY_HEX, "POST", "/v1/events"])
        .arg(&body_path)
        .args(["--timestamp", &fixture.clock.now_ms().to_string()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let mut request = Request::post("/v1/events").header("content-type", "application/json");
    for line in String::from_utf8(output.stdout).unwrap().lines() {
        let (name, value) = line.split_once(": ").unwrap();
        request = request.header(name, value);
    }
    let (status, answer) = fixture
        .call_json(request.body(Body::from(body)).unwrap())
        .await;
    assert_eq!(status, 202, "{answer}");
    assert_eq!(answer["results"][0]["status"], "queued");
}

#[tokio::test]
async fn a_boto3_gateway_posts_through_the_sqs_endpoint() {
    if !python_has("boto3") {
        eprintln!("skipped: no boto3");
        return;
    }
    let fixture = fixture().await;
    fixture.clock.set(SystemClock.now_ms());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(worldfleet_serve::serve(
        listener,
        fixture.state.clone(),
        std::future::pending(),
    ));
    let program = r#"
import json, os, sys, boto3
sqs = boto3.client("sqs")
url = sqs.get_queue_url(QueueName="intake.fifo")["QueueUrl"]
body = open(sys.argv[1]).read()
envelope = json.loads(body)
sent = sqs.send_message(QueueUrl=url, MessageBody=body, MessageGroupId=envelope["partition"],
                        MessageDeduplicationId=envelope["event_id"])
print(sent["MessageId"])
"#;
    let dir = tempfile::tempdir().unwrap();
    let body_path = dir.path().join("envelope.json");
    std::fs::write(&body_path, sample("combat")).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new("python3")
            .args(["-c", program])
            .arg(&body_path)
            .env("AWS_ENDPOINT_URL_SQS", format!("http://{address}"))
            .env("AWS_ACCESS_KEY_ID", GATEWAY)
            .env("AWS_SECRET_ACCESS_KEY", SAMPLE_KEY_HEX)
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "boto3 failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let messages = fixture.intake_messages().await;
    assert_eq!(messages.len(), 1);
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim(),
        messages[0].message_id
    );
    assert_eq!(messages[0].body, sample("combat"));
}
