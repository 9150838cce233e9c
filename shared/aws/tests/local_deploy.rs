//! `deploy_from_template` against the emulators: the queues and tables it creates are exactly
//! the ones `infra/template.yaml` declares, with the redrive the template gives them.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;

use aws_sdk_sqs::types::QueueAttributeName;
use worldfleet_aws::deploy_from_template;
use worldfleet_aws::local_deploy::declared_resources;
use worldfleet_aws::template::Template;
use worldfleet_domain::names::{INTAKE_QUEUE, dead_letter_queue};

fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml")
}

#[tokio::test]
async fn deploy_creates_exactly_the_declared_queues_and_tables() {
    if !support::local_aws("deploy_creates_exactly_the_declared_queues_and_tables") {
        return;
    }
    let (queue, table) = support::adapters("deploy").await;
    let declared = declared_resources(&Template::from_path(template_path()).unwrap()).unwrap();
    let declared_queues: BTreeSet<String> = declared
        .queues
        .iter()
        .map(|spec| spec.name.clone())
        .collect();
    let declared_tables: BTreeSet<String> = declared
        .tables
        .iter()
        .map(|spec| spec.name.clone())
        .collect();

    let report = deploy_from_template(template_path(), &queue, &table)
        .await
        .unwrap();
    assert_eq!(
        report.queues.iter().cloned().collect::<BTreeSet<_>>(),
        declared_queues
    );
    assert_eq!(
        report.tables.iter().cloned().collect::<BTreeSet<_>>(),
        declared_tables
    );

    // What exists under this stack prefix is the declared set, nothing more or less.
    let existing_queues: BTreeSet<String> =
        queue.list_queues().await.unwrap().into_iter().collect();
    let existing_tables: BTreeSet<String> =
        table.list_tables().await.unwrap().into_iter().collect();
    assert_eq!(existing_queues, declared_queues);
    assert_eq!(existing_tables, declared_tables);

    // A second deployment changes nothing.
    let again = deploy_from_template(template_path(), &queue, &table)
        .await
        .unwrap();
    assert_eq!(again, report);
    assert_eq!(
        queue.list_queues().await.unwrap().len(),
        declared_queues.len()
    );

    // The redrive policy made it through: intake.fifo → intake-dlq.fifo after 5 receives.
    let settings = queue.settings().clone();
    let config = settings.sdk_config().await;
    let client = aws_sdk_sqs::Client::new(&config);
    let url = client
        .get_queue_url()
        .queue_name(settings.physical_name(INTAKE_QUEUE))
        .send()
        .await
        .unwrap()
        .queue_url()
        .unwrap()
        .to_owned();
    let attributes = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::All)
        .send()
        .await
        .unwrap();
    let attributes = attributes.attributes().unwrap();
    let redrive: serde_json::Value =
        serde_json::from_str(&attributes[&QueueAttributeName::RedrivePolicy]).unwrap();
    assert_eq!(
        redrive["maxReceiveCount"].to_string().trim_matches('"'),
        "5"
    );
    let target = redrive["deadLetterTargetArn"].as_str().unwrap();
    assert!(
        target.ends_with(&settings.physical_name(&dead_letter_queue(INTAKE_QUEUE))),
        "{target}"
    );
    assert_eq!(attributes[&QueueAttributeName::VisibilityTimeout], "180");
    assert_eq!(attributes[&QueueAttributeName::FifoQueue], "true");
    assert_eq!(
        attributes[&QueueAttributeName::ContentBasedDeduplication],
        "false"
    );
}
