//! Checks `infra/template.yaml` against `worldfleet_domain::names::STAGES`: least-privilege
//! roles (no wildcards, nothing a stage does not use, everything it does), event sources,
//! queues with dead-letter queues and safe visibility timeouts (FIFO work queues, standard
//! timer queues of the world simulation), table shape, and the scheduled watchdog.
//! Roles that no function uses (the inference pool's instance and task-execution roles, the
//! serve tasks' execution role) are held to the same no-wildcard rule, with "*" resources
//! allowed only for the few actions AWS offers no resource-level permission for, and a
//! parameter as a resource only when its AllowedPattern pins it to one ARN. The role of the
//! ECS task running `worldfleet serve --aws` is held to exactly what the server calls, and its
//! load balancer to the server's timers (health check on `/ready`, idle timeout between the
//! stream keep-alive and the server's idle timeout). Needs no emulator. The mutation tests
//! prove each rule can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_yaml::Value;
use worldfleet_aws::local_deploy::declared_resources;
use worldfleet_aws::template::{
    Resource, Template, as_bool, as_u64, intrinsic, logical_name, referenced_resource, string_list,
};
use worldfleet_domain::names::{
    ALL_QUEUES, ALL_TABLES, FEEDS_API_FUNCTION, FEEDS_TABLE, INTAKE_QUEUE, LEDGER_TABLE,
    REJECTIONS_TABLE, STAGES, StageResources, WATCHDOG as WATCHDOG_RESOURCES, WORLD_QUEUES,
    WORLD_TABLES, dead_letter_queue,
};

const CONSUME: [&str; 4] = [
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibility",
    "sqs:GetQueueAttributes",
];
const SEND: [&str; 1] = ["sqs:SendMessage"];
const TABLE_WRITE: [&str; 8] = [
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
];
const TABLE_READ: [&str; 4] = [
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
];
const LOGS: [&str; 2] = ["logs:CreateLogStream", "logs:PutLogEvents"];
/// The feed API: feed pages read, reader checkpoints put (conditionally), nothing else.
const FEEDS_API: [&str; 3] = ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:PutItem"];
/// `worldfleet serve --aws` reads every stage queue's depth (`/metrics`; `/ready` the intake
/// queue's) and nothing else of a queue but the intake queue, which it sends to.
const QUEUE_DEPTH: [&str; 1] = ["sqs:GetQueueAttributes"];
/// `GET /v1/rejections/{event_id}` queries a gateway's rows; `?wait=decided` gets one.
const REJECTIONS_READ: [&str; 2] = ["dynamodb:GetItem", "dynamodb:Query"];
/// `?wait=decided` gets the envelope's ledger entry.
const LEDGER_READ: [&str; 1] = ["dynamodb:GetItem"];
/// What the serve task runs.
const SERVE_COMMAND: &str = "worldfleet serve --aws";
/// The one function that is not a stage: the scheduled watchdog.
const WATCHDOG: &str = "watchdog";

/// Every work queue: the narrative path's and the world simulation's.
fn work_queues() -> Vec<&'static str> {
    ALL_QUEUES.into_iter().chain(WORLD_QUEUES).collect()
}

/// Every table: the narrative path's and the world simulation's.
fn all_tables() -> BTreeSet<&'static str> {
    ALL_TABLES.into_iter().chain(WORLD_TABLES).collect()
}

fn template_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/template.yaml")
}

fn template_text() -> String {
    std::fs::read_to_string(template_path()).expect("infra/template.yaml is readable")
}

/// What a role grants: resource (a logical id, or a logical queue or table name) → actions.
type Grants = BTreeMap<String, BTreeSet<String>>;

fn text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => format!("{other:?}"),
    }
}

fn queue_names(template: &Template) -> BTreeMap<String, String> {
    template
        .resources_of("AWS::SQS::Queue")
        .iter()
        .filter_map(|queue| {
            Some((
                queue.id.to_owned(),
                logical_name(queue.property("QueueName")?)?,
            ))
        })
        .collect()
}

fn table_names(template: &Template) -> BTreeMap<String, String> {
    template
        .resources_of("AWS::DynamoDB::Table")
        .iter()
        .filter_map(|table| {
            Some((
                table.id.to_owned(),
                logical_name(table.property("TableName")?)?,
            ))
        })
        .collect()
}

/// The statements of a role's inline policies; a role with managed policies or a permissions
/// boundary is reported (as `owner`'s), since neither is checked here.
fn inline_statements<'a>(
    role: &Resource<'a>,
    owner: &str,
    problems: &mut Vec<String>,
) -> Vec<&'a Value> {
    for managed in ["ManagedPolicyArns", "PermissionsBoundary"] {
        if role.property(managed).is_some() {
            problems.push(format!("{owner}: role has {managed}"));
        }
    }
    role.property("Policies")
        .map(string_list)
        .unwrap_or_default()
        .into_iter()
        .flat_map(|policy| {
            policy
                .get("PolicyDocument")
                .and_then(|document| document.get("Statement"))
                .map(string_list)
                .unwrap_or_default()
        })
        .collect()
}

/// Whether a statement allows; one that does not is reported (every role grants with Allow
/// statements only).
fn is_allow(statement: &Value, owner: &str, problems: &mut Vec<String>) -> bool {
    let allow = statement.get("Effect").and_then(Value::as_str) == Some("Allow");
    if !allow {
        problems.push(format!("{owner}: only Allow statements are expected"));
    }
    allow
}

/// A statement's actions, with the checks every role's statements get: no `NotAction` or
/// `NotResource` (wildcards in disguise) and no wildcard action.
fn checked_actions(statement: &Value, owner: &str, problems: &mut Vec<String>) -> Vec<String> {
    for forbidden in ["NotAction", "NotResource"] {
        if statement.get(forbidden).is_some() {
            problems.push(format!("{owner}: {forbidden} is a wildcard in disguise"));
        }
    }
    let actions: Vec<String> = statement
        .get("Action")
        .map(string_list)
        .unwrap_or_default()
        .into_iter()
        .map(text)
        .collect();
    for action in &actions {
        if action.contains('*') {
            problems.push(format!("{owner}: wildcard action {action}"));
        }
    }
    actions
}

/// A statement's resources.
fn resources(statement: &Value) -> Vec<&Value> {
    statement
        .get("Resource")
        .map(string_list)
        .unwrap_or_default()
}

/// Every statement of the function's role and any SAM `Policies`, flattened into grants.
fn grants_of(template: &Template, function: &Resource<'_>, problems: &mut Vec<String>) -> Grants {
    let mut statements: Vec<&Value> = Vec::new();
    if let Some(policies) = function.property("Policies") {
        problems.push(format!(
            "{}: SAM `Policies` add managed policies with wildcard resources; use the role",
            function.id
        ));
        for policy in string_list(policies) {
            statements.extend(policy.get("Statement").map(string_list).unwrap_or_default());
        }
    }
    let role = function.property("Role").and_then(referenced_resource);
    match role.as_deref().and_then(|id| template.resource(id)) {
        Some(role) if role.kind == "AWS::IAM::Role" => {
            statements.extend(inline_statements(&role, function.id, problems));
        }
        _ => problems.push(format!(
            "{}: Role must be !GetAtt <AWS::IAM::Role in this template>.Arn",
            function.id
        )),
    }
    grants_from(template, statements, function.id, problems)
}

/// Allow statements flattened into grants, every resource a reference to a resource of this
/// template (no wildcard, no `!Sub` ARN): the rule for roles that touch queues and tables.
fn grants_from(
    template: &Template,
    statements: Vec<&Value>,
    owner: &str,
    problems: &mut Vec<String>,
) -> Grants {
    let mut grants = Grants::new();
    for statement in statements {
        if !is_allow(statement, owner, problems) {
            continue;
        }
        let actions = checked_actions(statement, owner, problems);
        if actions
            .iter()
            .any(|action| action.starts_with("secretsmanager:"))
        {
            for resource in resources(statement) {
                match secret_target(template, resource) {
                    Some(target) => grants
                        .entry(target)
                        .or_default()
                        .extend(actions.iter().cloned()),
                    None => problems.push(format!(
                        "{owner}: secret resource {resource:?} is not one secret of this \
                         template or a parameter pinned to one ARN"
                    )),
                }
            }
            continue;
        }
        for resource in resources(statement) {
            if text(resource).contains('*') {
                problems.push(format!("{owner}: wildcard resource {}", text(resource)));
                continue;
            }
            let Some(target) =
                referenced_resource(resource).filter(|id| template.resource(id).is_some())
            else {
                problems.push(format!(
                    "{owner}: resource {resource:?} is not a reference to a resource of this template"
                ));
                continue;
            };
            if intrinsic(resource).is_some_and(|(function, _)| function == "Sub") {
                problems.push(format!("{owner}: !Sub resources may hide wildcards"));
            }
            grants
                .entry(target)
                .or_default()
                .extend(actions.iter().cloned());
        }
    }
    grants
}

/// The gateway-keys secret as a grant target: the secret the template creates, or the
/// parameter naming an existing one.
const GATEWAY_KEYS_SECRET: &str = "secret:GatewayKeysSecret|GatewayKeysSecretArn";
/// The one action a role needs on it.
const SECRET_READ: [&str; 1] = ["secretsmanager:GetSecretValue"];

/// A secret a statement names, as `secret:<logical id>[|<logical id>]`: `!Ref` of an
/// `AWS::SecretsManager::Secret` of this template, `!Ref` of a parameter pinned to one ARN, or
/// `!If [condition, one, other]` of two of those. Anything else (a wildcard, a `!Sub`) is None.
fn secret_target(template: &Template, resource: &Value) -> Option<String> {
    fn names(template: &Template, resource: &Value) -> Option<Vec<String>> {
        let (function, argument) = intrinsic(resource)?;
        match function.as_str() {
            "Ref" => {
                let name = argument.as_str()?;
                let is_secret = template
                    .resource(name)
                    .is_some_and(|found| found.kind == "AWS::SecretsManager::Secret");
                (is_secret || pins_one_arn(template, name)).then(|| vec![name.to_owned()])
            }
            "If" => {
                let branches = argument.as_sequence()?;
                if branches.len() != 3 {
                    return None;
                }
                let mut all = names(template, &branches[1])?;
                all.extend(names(template, &branches[2])?);
                Some(all)
            }
            _ => None,
        }
    }
    let mut all = names(template, resource)?;
    all.sort();
    all.dedup();
    Some(format!("secret:{}", all.join("|")))
}

/// Reports every difference between what `name` is granted and exactly what it should be,
/// both keyed by logical queue or table name.
fn compare_grants(
    owner: &str,
    name: &str,
    granted: &Grants,
    expected: &Grants,
    problems: &mut Vec<String>,
) {
    for (resource, actions) in granted {
        match expected.get(resource) {
            None => problems.push(format!(
                "{owner}: {name} may touch {resource}, which it does not use ({actions:?})"
            )),
            Some(wanted) if wanted != actions => problems.push(format!(
                "{owner}: {name} on {resource}: granted {actions:?}, expected exactly {wanted:?}"
            )),
            Some(_) => {}
        }
    }
    for resource in expected.keys() {
        if !granted.contains_key(resource) {
            problems.push(format!("{owner}: {name} lacks permissions on {resource}"));
        }
    }
}

/// The feed API's events: HTTP API routes only, on an API whose default authorizer is IAM, and
/// exactly the feed routes `worldfleet_serve::feeds_api` serves.
fn api_events(template: &Template, function: &Resource<'_>, problems: &mut Vec<String>) {
    let events: Vec<&Value> = match function.property("Events") {
        Some(Value::Mapping(events)) => events.values().collect(),
        _ => Vec::new(),
    };
    let mut routes = BTreeSet::new();
    for event in events {
        if event.get("Type").and_then(Value::as_str) != Some("HttpApi") {
            problems.push(format!(
                "{}: the feed API is invoked only by its HTTP API",
                function.id
            ));
            continue;
        }
        let properties = event.get("Properties").unwrap_or(&Value::Null);
        let api = properties.get("ApiId").and_then(referenced_resource);
        let authorizer = api
            .as_deref()
            .and_then(|id| template.resource(id))
            .filter(|resource| resource.kind == "AWS::Serverless::HttpApi")
            .and_then(|resource| resource.property("Auth"))
            .and_then(|auth| auth.get("DefaultAuthorizer"))
            .and_then(Value::as_str);
        if authorizer != Some("AWS_IAM") {
            problems.push(format!(
                "{}: route on {api:?} is not behind an HTTP API with IAM authorization",
                function.id
            ));
        }
        routes.insert(format!(
            "{} {}",
            properties
                .get("Method")
                .and_then(Value::as_str)
                .unwrap_or("?"),
            properties
                .get("Path")
                .and_then(Value::as_str)
                .unwrap_or("?")
        ));
    }
    let wanted: BTreeSet<String> = [
        "GET /v1/feeds/{feed}",
        "GET /v1/feeds/{feed}/readers/{reader}",
        "PUT /v1/feeds/{feed}/readers/{reader}",
    ]
    .into_iter()
    .map(str::to_owned)
    .collect();
    if routes != wanted {
        problems.push(format!(
            "{}: routes {routes:?}, expected {wanted:?}",
            function.id
        ));
    }
}

fn set(actions: &[&str]) -> BTreeSet<String> {
    actions.iter().map(|action| (*action).to_owned()).collect()
}

/// Timeout of a function: its own, else the global one, else Lambda's default of 3 s.
fn function_timeout(template: &Template, function: &Resource<'_>) -> u64 {
    function
        .property("Timeout")
        .or_else(|| template.function_global("Timeout"))
        .and_then(as_u64)
        .unwrap_or(3)
}

/// Every rule this test enforces; empty when the template is fine.
fn violations(template: &Template) -> Vec<String> {
    let mut problems = Vec::new();
    let queues = queue_names(template);
    let tables = table_names(template);
    let stage_of: BTreeMap<&str, &StageResources> =
        STAGES.iter().map(|stage| (stage.stage, stage)).collect();
    let mut consumer_timeouts: BTreeMap<String, u64> = BTreeMap::new();
    let mut seen_stages = BTreeSet::new();

    for function in template.resources_of("AWS::Serverless::Function") {
        let Some(name) = function.property("FunctionName").and_then(logical_name) else {
            problems.push(format!(
                "{}: FunctionName must be !Sub \"${{AWS::StackName}}-<stage>\"",
                function.id
            ));
            continue;
        };
        let grants = grants_of(template, &function, &mut problems);
        let stage = stage_of.get(name.as_str()).copied();
        let api = name == FEEDS_API_FUNCTION;
        if stage.is_none() && name != WATCHDOG && !api {
            problems.push(format!(
                "{}: {name} is neither a stage in STAGES, the watchdog nor the feed API",
                function.id
            ));
            continue;
        }
        seen_stages.insert(name.clone());
        let expected_code = format!("../target/lambda/{name}/");
        if function.property("CodeUri").and_then(Value::as_str) != Some(expected_code.as_str()) {
            problems.push(format!("{}: CodeUri must be {expected_code}", function.id));
        }

        let mut expected = Grants::new();
        if api {
            expected.insert(FEEDS_TABLE.to_owned(), set(&FEEDS_API));
            api_events(template, &function, &mut problems);
        } else {
            // The watchdog consumes no queue; it sends and reads what WATCHDOG says.
            if let Some(stage) = stage {
                expected.insert(stage.consumes.to_owned(), set(&CONSUME));
            }
            let resources = stage.unwrap_or(&WATCHDOG_RESOURCES);
            for queue in resources.sends_to {
                expected
                    .entry((*queue).to_owned())
                    .or_default()
                    .extend(set(&SEND));
            }
            for table in resources.writes {
                expected.insert((*table).to_owned(), set(&TABLE_WRITE));
            }
            for table in resources.reads {
                if !resources.writes.contains(table) {
                    expected.insert((*table).to_owned(), set(&TABLE_READ));
                }
            }
            // Intake verifies envelopes: it alone reads the gateway keys.
            if name == "intake" {
                expected.insert(GATEWAY_KEYS_SECRET.to_owned(), set(&SECRET_READ));
            }
        }
        let mut granted = Grants::new();
        for (target, actions) in &grants {
            if target.starts_with("secret:") {
                granted.insert(target.clone(), actions.clone());
                continue;
            }
            let resource = template
                .resource(target)
                .map(|resource| resource.kind)
                .unwrap_or("");
            let logical = match resource {
                "AWS::SQS::Queue" => queues.get(target).cloned(),
                "AWS::DynamoDB::Table" => tables.get(target).cloned(),
                "AWS::Logs::LogGroup" => {
                    let group = template
                        .resource(target)
                        .and_then(|group| group.property("LogGroupName"))
                        .and_then(|group| intrinsic(group).map(|(_, argument)| text(argument)));
                    let own = format!("/aws/lambda/${{AWS::StackName}}-{name}");
                    if group.as_deref() != Some(own.as_str()) {
                        problems.push(format!(
                            "{}: log permissions on another function's log group {target}",
                            function.id
                        ));
                    }
                    if actions != &set(&LOGS) {
                        problems.push(format!("{}: log actions {actions:?}", function.id));
                    }
                    continue;
                }
                other => {
                    problems.push(format!("{}: permission on {target} ({other})", function.id));
                    continue;
                }
            };
            match logical {
                Some(logical) => {
                    granted
                        .entry(logical)
                        .or_default()
                        .extend(actions.iter().cloned());
                }
                None => problems.push(format!(
                    "{}: {target} has no stack-relative name",
                    function.id
                )),
            }
        }
        compare_grants(function.id, &name, &granted, &expected, &mut problems);

        // Event sources: exactly the consumed queue, per-record failures, FIFO batch size.
        let events: Vec<&Value> = match function.property("Events") {
            Some(Value::Mapping(events)) => events.values().collect(),
            _ => Vec::new(),
        };
        let sqs_events: Vec<&Value> = events
            .iter()
            .copied()
            .filter(|event| event.get("Type").and_then(Value::as_str) == Some("SQS"))
            .collect();
        match stage {
            Some(stage) => {
                if sqs_events.len() != 1 {
                    problems.push(format!(
                        "{}: expected one SQS event, found {}",
                        function.id,
                        sqs_events.len()
                    ));
                }
                for event in sqs_events {
                    let properties = event.get("Properties").unwrap_or(&Value::Null);
                    let queue = properties
                        .get("Queue")
                        .and_then(referenced_resource)
                        .and_then(|id| queues.get(&id).cloned());
                    if queue.as_deref() != Some(stage.consumes) {
                        problems.push(format!(
                            "{}: event source {queue:?} is not {}",
                            function.id, stage.consumes
                        ));
                    }
                    let batch = properties.get("BatchSize").and_then(as_u64).unwrap_or(10);
                    if !(1..=10).contains(&batch) {
                        problems.push(format!(
                            "{}: FIFO batch size {batch} not in 1..=10",
                            function.id
                        ));
                    }
                    let reports = properties
                        .get("FunctionResponseTypes")
                        .map(string_list)
                        .unwrap_or_default()
                        .into_iter()
                        .any(|kind| kind.as_str() == Some("ReportBatchItemFailures"));
                    if !reports {
                        problems.push(format!(
                            "{}: event source lacks ReportBatchItemFailures",
                            function.id
                        ));
                    }
                }
                consumer_timeouts.insert(
                    stage.consumes.to_owned(),
                    function_timeout(template, &function),
                );
            }
            None if !sqs_events.is_empty() => {
                problems.push(format!("{}: {name} consumes no queue", function.id));
            }
            None => {}
        }
    }
    for stage in STAGES {
        if !seen_stages.contains(stage.stage) {
            problems.push(format!("no function for stage {}", stage.stage));
        }
    }
    if !seen_stages.contains(WATCHDOG) {
        problems.push("no watchdog function".into());
    }
    if !seen_stages.contains(FEEDS_API_FUNCTION) {
        problems.push("no feed API function".into());
    }

    // Queues: every work queue has a DLQ of its kind (FIFO exactly when the name ends in
    // `.fifo`), maxReceiveCount 5, visibility >= 6x timeout.
    let declared_queues: BTreeSet<&str> = queues.values().map(String::as_str).collect();
    let mut wanted_queues: BTreeSet<String> = BTreeSet::new();
    for queue in work_queues() {
        wanted_queues.insert(queue.to_owned());
        wanted_queues.insert(dead_letter_queue(queue));
    }
    if declared_queues != wanted_queues.iter().map(String::as_str).collect() {
        problems.push(format!(
            "queues {declared_queues:?}, expected {wanted_queues:?}"
        ));
    }
    for resource in template.resources_of("AWS::SQS::Queue") {
        let Some(name) = queues.get(resource.id) else {
            problems.push(format!("{}: QueueName is not stack-relative", resource.id));
            continue;
        };
        let fifo = resource.property("FifoQueue").and_then(as_bool) == Some(true);
        if fifo != name.ends_with(".fifo") {
            problems.push(format!(
                "{name}: FifoQueue must be true exactly when the name ends in .fifo"
            ));
        }
        if !work_queues().contains(&name.as_str()) {
            continue;
        }
        let redrive = resource.property("RedrivePolicy");
        let target = redrive
            .and_then(|policy| policy.get("deadLetterTargetArn"))
            .and_then(referenced_resource)
            .and_then(|id| queues.get(&id).cloned());
        if target != Some(dead_letter_queue(name)) {
            problems.push(format!("{name}: dead-letter target {target:?}"));
        }
        let count = redrive
            .and_then(|policy| policy.get("maxReceiveCount"))
            .and_then(as_u64);
        if count != Some(5) {
            problems.push(format!("{name}: maxReceiveCount {count:?}, expected 5"));
        }
        let visibility = resource
            .property("VisibilityTimeout")
            .and_then(as_u64)
            .unwrap_or(30);
        let timeout = consumer_timeouts.get(name).copied().unwrap_or(u64::MAX / 6);
        if visibility < 6 * timeout {
            problems.push(format!(
                "{name}: visibility {visibility}s < 6 x function timeout {timeout}s"
            ));
        }
    }

    // Tables: exactly ALL_TABLES and WORLD_TABLES, pk/sk strings, on demand, TTL on `ttl`.
    let declared_tables: BTreeSet<&str> = tables.values().map(String::as_str).collect();
    if declared_tables != all_tables() {
        problems.push(format!(
            "tables {declared_tables:?}, expected {:?}",
            all_tables()
        ));
    }
    for resource in template.resources_of("AWS::DynamoDB::Table") {
        let id = resource.id;
        if resource.property("BillingMode").and_then(Value::as_str) != Some("PAY_PER_REQUEST") {
            problems.push(format!("{id}: not PAY_PER_REQUEST"));
        }
        let schema: Vec<(String, String)> = resource
            .property("KeySchema")
            .map(string_list)
            .unwrap_or_default()
            .into_iter()
            .map(|key| {
                (
                    text(key.get("AttributeName").unwrap_or(&Value::Null)),
                    text(key.get("KeyType").unwrap_or(&Value::Null)),
                )
            })
            .collect();
        if schema != [("pk".into(), "HASH".into()), ("sk".into(), "RANGE".into())] {
            problems.push(format!("{id}: key schema {schema:?}"));
        }
        let definitions: BTreeSet<(String, String)> = resource
            .property("AttributeDefinitions")
            .map(string_list)
            .unwrap_or_default()
            .into_iter()
            .map(|definition| {
                (
                    text(definition.get("AttributeName").unwrap_or(&Value::Null)),
                    text(definition.get("AttributeType").unwrap_or(&Value::Null)),
                )
            })
            .collect();
        if definitions != BTreeSet::from([("pk".into(), "S".into()), ("sk".into(), "S".into())]) {
            problems.push(format!("{id}: attribute definitions {definitions:?}"));
        }
        let ttl = resource.property("TimeToLiveSpecification");
        if ttl
            .and_then(|ttl| ttl.get("AttributeName"))
            .and_then(Value::as_str)
            != Some("ttl")
            || ttl.and_then(|ttl| ttl.get("Enabled")).and_then(as_bool) != Some(true)
        {
            problems.push(format!("{id}: TTL must be enabled on `ttl`"));
        }
    }

    // The watchdog: a once-a-minute rule invoking the watchdog function, allowed to.
    let watchdog_id = template
        .resources_of("AWS::Serverless::Function")
        .into_iter()
        .find(|function| {
            function
                .property("FunctionName")
                .and_then(logical_name)
                .as_deref()
                == Some(WATCHDOG)
        })
        .map(|function| function.id.to_owned());
    let rules = template.resources_of("AWS::Events::Rule");
    let scheduled = rules.iter().find(|rule| {
        rule.property("ScheduleExpression").and_then(Value::as_str) == Some("rate(1 minute)")
            && rule
                .property("Targets")
                .map(string_list)
                .unwrap_or_default()
                .into_iter()
                .any(|target| target.get("Arn").and_then(referenced_resource) == watchdog_id)
    });
    match scheduled {
        None => problems.push("no rate(1 minute) rule targeting the watchdog".into()),
        Some(rule) => {
            let permitted =
                template
                    .resources_of("AWS::Lambda::Permission")
                    .iter()
                    .any(|permission| {
                        permission.property("Principal").and_then(Value::as_str)
                            == Some("events.amazonaws.com")
                            && permission
                                .property("SourceArn")
                                .and_then(referenced_resource)
                                .as_deref()
                                == Some(rule.id)
                            && permission
                                .property("FunctionName")
                                .and_then(referenced_resource)
                                == watchdog_id
                    });
            if !permitted {
                problems.push("the watchdog rule has no permission to invoke the function".into());
            }
        }
    }
    problems
}

/// Actions that AWS authorises only on `"*"`: the one case where a service role may name it.
const NO_RESOURCE_LEVEL_PERMISSION: [&str; 2] =
    ["ecs:DiscoverPollEndpoint", "ecr:GetAuthorizationToken"];

/// Rules for IAM roles that no function uses (assumed by EC2 instances or ECS tasks): inline
/// policies only, Allow only, no wildcard actions, and resources that are template resources,
/// ARNs scoped under one (`.../${Resource}/*`), or `"*"` only for actions without
/// resource-level permissions.
fn service_role_violations(template: &Template) -> Vec<String> {
    let mut problems = Vec::new();
    let function_roles: BTreeSet<String> = template
        .resources_of("AWS::Serverless::Function")
        .iter()
        .filter_map(|function| function.property("Role").and_then(referenced_resource))
        .collect();
    for kind in ["AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"] {
        for policy in template.resources_of(kind) {
            problems.push(format!(
                "{}: {kind} is not checked here; put policies inline in their role",
                policy.id
            ));
        }
    }
    for role in template.resources_of("AWS::IAM::Role") {
        if function_roles.contains(role.id) {
            continue;
        }
        let statements = inline_statements(&role, role.id, &mut problems);
        let trusted_services: Vec<String> = role
            .property("AssumeRolePolicyDocument")
            .and_then(|document| document.get("Statement"))
            .map(string_list)
            .unwrap_or_default()
            .into_iter()
            .flat_map(|statement| {
                let principal = statement.get("Principal");
                if principal
                    .and_then(|principal| principal.get("Service"))
                    .is_none()
                {
                    problems.push(format!(
                        "{}: may be assumed by a principal that is not an AWS service",
                        role.id
                    ));
                }
                principal
                    .and_then(|principal| principal.get("Service"))
                    .map(string_list)
                    .unwrap_or_default()
                    .into_iter()
                    .map(text)
            })
            .collect();
        if trusted_services.is_empty() {
            problems.push(format!("{}: trusts no service", role.id));
        }
        for statement in statements {
            // A statement that is not an Allow is reported and still checked.
            is_allow(statement, role.id, &mut problems);
            let actions = checked_actions(statement, role.id, &mut problems);
            for resource in resources(statement) {
                if text(resource) == "*" {
                    let unscoped: Vec<&String> = actions
                        .iter()
                        .filter(|action| !NO_RESOURCE_LEVEL_PERMISSION.contains(&action.as_str()))
                        .collect();
                    if !unscoped.is_empty() {
                        problems.push(format!(
                            "{}: wildcard resource for {unscoped:?}, which can be scoped",
                            role.id
                        ));
                    }
                    continue;
                }
                if referenced_resource(resource).is_some_and(|id| template.resource(&id).is_some())
                {
                    continue;
                }
                if let Some(parameter) = referenced_resource(resource).filter(|id| {
                    template
                        .root()
                        .get("Parameters")
                        .and_then(|p| p.get(id))
                        .is_some()
                }) {
                    if !pins_one_arn(template, &parameter) {
                        problems.push(format!(
                            "{}: resource parameter {parameter} is not pinned to one ARN (an \
                             anchored AllowedPattern `^(arn:…)?$` with no \"*\")",
                            role.id
                        ));
                    }
                    continue;
                }
                // A !Sub ARN: a wildcard only after a reference to a resource of this template.
                let scoped = match intrinsic(resource) {
                    Some((function, argument)) if function == "Sub" => {
                        let pattern = text(argument);
                        match pattern.find('*') {
                            None => true,
                            Some(star) => template.resources().iter().any(|candidate| {
                                pattern[..star].contains(&format!("${{{}}}", candidate.id))
                            }),
                        }
                    }
                    _ => false,
                };
                if !scoped {
                    problems.push(format!(
                        "{}: resource {resource:?} is neither a template resource nor an ARN \
                         scoped under one",
                        role.id
                    ));
                }
            }
        }
    }
    problems
}

/// Whether template parameter `name` can only hold one exact ARN (or nothing): its
/// AllowedPattern is anchored, starts with `arn:` and has no `*` anywhere, so neither a
/// wildcard value nor a pattern admitting one gets through.
fn pins_one_arn(template: &Template, name: &str) -> bool {
    template
        .root()
        .get("Parameters")
        .and_then(|parameters| parameters.get(name))
        .and_then(|parameter| parameter.get("AllowedPattern"))
        .and_then(Value::as_str)
        .is_some_and(|pattern| {
            (pattern.starts_with("^arn:") || pattern.starts_with("^(arn:"))
                && pattern.ends_with('$')
                && !pattern.contains('*')
        })
}

/// What `worldfleet serve --aws` calls (`shared/serve/src`), by logical queue or table name:
/// SendMessageBatch to the intake queue (authorised as `sqs:SendMessage`; the SQS door's
/// SendMessage goes through the same batch send), every stage queue's depth, feed pages and
/// reader checkpoints (the feed API's three actions), and intake's verdicts. Queue URLs come
/// from `WORLDFLEET_QUEUE_URLS`, so no `sqs:GetQueueUrl`.
fn serve_expected() -> Grants {
    let mut expected = Grants::new();
    for stage in &STAGES {
        expected
            .entry(stage.consumes.to_owned())
            .or_default()
            .extend(set(&QUEUE_DEPTH));
    }
    expected
        .entry(INTAKE_QUEUE.to_owned())
        .or_default()
        .extend(set(&SEND));
    expected.insert(FEEDS_TABLE.to_owned(), set(&FEEDS_API));
    expected.insert(REJECTIONS_TABLE.to_owned(), set(&REJECTIONS_READ));
    expected.insert(LEDGER_TABLE.to_owned(), set(&LEDGER_READ));
    expected
}

/// The server's timers that the load balancer in front of it must fit: `ServeConfig`'s
/// defaults (`shared/serve/src/config.rs`), overridden by the task's environment.
struct ServeTimers {
    keep_alive: u64,
    idle: u64,
    head: u64,
    shutdown_grace: u64,
}

impl ServeTimers {
    fn from_environment(environment: &BTreeMap<String, String>) -> Self {
        let secs = |name: &str, default: u64| {
            environment
                .get(name)
                .and_then(|value| value.parse().ok())
                .unwrap_or(default)
        };
        Self {
            keep_alive: secs("WORLDFLEET_SERVE_KEEP_ALIVE_SECS", 15),
            idle: secs("WORLDFLEET_SERVE_IDLE_TIMEOUT_SECS", 60),
            head: secs("WORLDFLEET_SERVE_HEADER_TIMEOUT_SECS", 10),
            shutdown_grace: secs("WORLDFLEET_SERVE_SHUTDOWN_GRACE_SECS", 10),
        }
    }
}

/// A list of `{Name: …, <field>: …}` entries (container `Environment`, `Secrets`) as a map.
fn named_values(list: Option<&Value>, field: &str) -> BTreeMap<String, String> {
    list.map(string_list)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|entry| {
            Some((
                entry.get("Name")?.as_str()?.to_owned(),
                text(entry.get(field)?),
            ))
        })
        .collect()
}

/// A `Key`/`Value` attribute of a load balancer or target group, as a number.
fn attribute(resource: &Resource<'_>, list: &str, key: &str) -> Option<u64> {
    resource
        .property(list)
        .map(string_list)
        .unwrap_or_default()
        .into_iter()
        .find(|attribute| attribute.get("Key").and_then(Value::as_str) == Some(key))
        .and_then(|attribute| attribute.get("Value"))
        .and_then(as_u64)
}

/// The doors' long-lived server: every ECS container that runs `worldfleet serve --aws` listens
/// on 0.0.0.0:8080, takes the gateway keys from a secret, runs as a task role granted exactly
/// [`serve_expected`] (the same no-wildcard rules as a function's role), and is served by an
/// ECS service behind a load balancer that health-checks `/ready`, drains longer than the
/// shutdown grace, and whose idle timeout lies above the stream keep-alive and below the
/// server's idle and request-head timeouts. The block is conditional in the template; it is
/// read as written.
fn serve_violations(template: &Template) -> Vec<String> {
    let mut problems = Vec::new();
    let queues = queue_names(template);
    let tables = table_names(template);
    let mut found = false;
    for task in template.resources_of("AWS::ECS::TaskDefinition") {
        let containers = task
            .property("ContainerDefinitions")
            .map(string_list)
            .unwrap_or_default();
        for container in containers {
            let command: Vec<String> = ["EntryPoint", "Command"]
                .into_iter()
                .filter_map(|field| container.get(field))
                .flat_map(string_list)
                .map(text)
                .collect();
            if command.join(" ") != SERVE_COMMAND {
                continue;
            }
            found = true;
            let owner = task.id;
            let environment = named_values(container.get("Environment"), "Value");
            let secrets = named_values(container.get("Secrets"), "ValueFrom");
            let bind = environment.get("WORLDFLEET_SERVE_BIND").map(String::as_str);
            if bind != Some("0.0.0.0:8080") {
                problems.push(format!(
                    "{owner}: WORLDFLEET_SERVE_BIND is {bind:?}; the load balancer reaches the \
                     task on 0.0.0.0:8080"
                ));
            }
            if environment.contains_key("WORLDFLEET_GATEWAY_KEYS")
                || !secrets.contains_key("WORLDFLEET_GATEWAY_KEYS")
            {
                problems.push(format!(
                    "{owner}: WORLDFLEET_GATEWAY_KEYS must come from Secrets, not Environment"
                ));
            }

            let role = task
                .property("TaskRoleArn")
                .and_then(referenced_resource)
                .and_then(|id| template.resource(&id))
                .filter(|role| role.kind == "AWS::IAM::Role");
            match role {
                None => problems.push(format!(
                    "{owner}: TaskRoleArn must be !GetAtt <AWS::IAM::Role in this template>.Arn"
                )),
                Some(role) => {
                    let statements = inline_statements(&role, role.id, &mut problems);
                    let grants = grants_from(template, statements, role.id, &mut problems);
                    let mut granted = Grants::new();
                    for (target, actions) in &grants {
                        let kind = template
                            .resource(target)
                            .map(|resource| resource.kind)
                            .unwrap_or("");
                        let logical = match kind {
                            "AWS::SQS::Queue" => queues.get(target),
                            "AWS::DynamoDB::Table" => tables.get(target),
                            _ => None,
                        };
                        match logical {
                            Some(logical) => granted
                                .entry(logical.clone())
                                .or_default()
                                .extend(actions.iter().cloned()),
                            None => problems
                                .push(format!("{}: permission on {target} ({kind})", role.id)),
                        }
                    }
                    compare_grants(role.id, "serve", &granted, &serve_expected(), &mut problems);
                }
            }

            let timers = ServeTimers::from_environment(&environment);
            let stop_timeout = container.get("StopTimeout").and_then(as_u64).unwrap_or(30);
            if stop_timeout <= timers.shutdown_grace {
                problems.push(format!(
                    "{owner}: StopTimeout {stop_timeout}s leaves no room for the {}s shutdown grace",
                    timers.shutdown_grace
                ));
            }
            serve_load_balancing(template, owner, &timers, &mut problems);
        }
    }
    if !found {
        problems.push(format!("no ECS task runs `{SERVE_COMMAND}`"));
    }
    problems
}

/// The service running task definition `task`, its target groups and the load balancers
/// forwarding to them, held against the server's timers.
fn serve_load_balancing(
    template: &Template,
    task: &str,
    timers: &ServeTimers,
    problems: &mut Vec<String>,
) {
    let services: Vec<Resource<'_>> = template
        .resources_of("AWS::ECS::Service")
        .into_iter()
        .filter(|service| {
            service
                .property("TaskDefinition")
                .and_then(referenced_resource)
                .as_deref()
                == Some(task)
        })
        .collect();
    if services.is_empty() {
        problems.push(format!("{task}: no ECS service runs it"));
    }
    for service in services {
        let target_groups: Vec<String> = service
            .property("LoadBalancers")
            .map(string_list)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|entry| entry.get("TargetGroupArn").and_then(referenced_resource))
            .collect();
        if target_groups.is_empty() {
            problems.push(format!("{}: not behind a load balancer", service.id));
        }
        for group_id in target_groups {
            let Some(group) = template.resource(&group_id) else {
                problems.push(format!(
                    "{}: target group {group_id} is not in the template",
                    service.id
                ));
                continue;
            };
            let path = group.property("HealthCheckPath").and_then(Value::as_str);
            if path != Some("/ready") {
                problems.push(format!(
                    "{group_id}: health check path {path:?}, expected /ready (503 while the \
                     server cannot reach its queue and table, or shuts down)"
                ));
            }
            // Elastic Load Balancing's default is 300 s.
            let delay = attribute(
                &group,
                "TargetGroupAttributes",
                "deregistration_delay.timeout_seconds",
            )
            .unwrap_or(300);
            if delay <= timers.shutdown_grace {
                problems.push(format!(
                    "{group_id}: deregistration delay {delay}s is not above the server's {}s \
                     shutdown grace",
                    timers.shutdown_grace
                ));
            }
            let listeners: Vec<Resource<'_>> = template
                .resources_of("AWS::ElasticLoadBalancingV2::Listener")
                .into_iter()
                .filter(|listener| {
                    listener
                        .property("DefaultActions")
                        .map(string_list)
                        .unwrap_or_default()
                        .into_iter()
                        .any(|action| {
                            action
                                .get("TargetGroupArn")
                                .and_then(referenced_resource)
                                .as_deref()
                                == Some(group_id.as_str())
                        })
                })
                .collect();
            if listeners.is_empty() {
                problems.push(format!("{group_id}: no listener forwards to it"));
            }
            for listener in listeners {
                let balancer = listener
                    .property("LoadBalancerArn")
                    .and_then(referenced_resource)
                    .and_then(|id| template.resource(&id));
                let Some(balancer) = balancer else {
                    problems.push(format!(
                        "{}: no load balancer of this template",
                        listener.id
                    ));
                    continue;
                };
                // Elastic Load Balancing's default is 60 s.
                let idle = attribute(
                    &balancer,
                    "LoadBalancerAttributes",
                    "idle_timeout.timeout_seconds",
                )
                .unwrap_or(60);
                if idle <= timers.keep_alive || idle >= timers.idle.min(timers.head) {
                    problems.push(format!(
                        "{}: idle timeout {idle}s must be above the server's {}s keep-alive \
                         (or quiet streams are cut) and below its {}s idle timeout and {}s \
                         head timeout (or it reuses connections the server closed)",
                        balancer.id, timers.keep_alive, timers.idle, timers.head
                    ));
                }
            }
        }
    }
}

#[test]
fn serve_runs_with_exact_grants_behind_a_load_balancer_that_fits_its_timers() {
    let template = Template::from_path(template_path()).expect("template parses");
    let problems = serve_violations(&template);
    assert!(
        problems.is_empty(),
        "serve violations:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn a_serve_role_granted_more_less_or_a_wildcard_fails() {
    let mutated = |from: &str, to: &str| serve_violations(&mutated_template(from, to));
    let ledger = "              - Sid: ReadLedgerVerdicts\n                Effect: Allow\n                Action:\n                  - dynamodb:GetItem\n";
    let problems = mutated(
        ledger,
        &format!("{ledger}                  - dynamodb:PutItem\n"),
    );
    assert_reported(&problems, "serve on ledger: granted");
    let problems = mutated(
        "                Resource: !GetAtt LedgerTable.Arn\n  ServeTaskDefinition:",
        "                Resource:\n                  - !GetAtt LedgerTable.Arn\n                  - !GetAtt CanonTable.Arn\n  ServeTaskDefinition:",
    );
    assert_reported(&problems, "serve may touch canon");
    let problems = mutated(
        "                  - !GetAtt EcologyTickQueue.Arn\n              - Sid: ReadFeedsWriteCheckpoints",
        "              - Sid: ReadFeedsWriteCheckpoints",
    );
    assert_reported(&problems, "serve lacks permissions on ecology-tick");
    let problems = mutated(
        "                  - sqs:SendMessage\n                Resource: !GetAtt IntakeQueue.Arn\n              - Sid: ReadQueueDepths",
        "                  - \"sqs:*\"\n                Resource: !GetAtt IntakeQueue.Arn\n              - Sid: ReadQueueDepths",
    );
    assert_reported(&problems, "wildcard action sqs:*");
    let problems = mutated(
        "                Resource: !GetAtt LedgerTable.Arn\n  ServeTaskDefinition:",
        "                Resource: \"*\"\n  ServeTaskDefinition:",
    );
    assert_reported(&problems, "ServeTaskRole: wildcard resource *");
}

#[test]
fn a_serve_task_out_of_step_with_its_load_balancer_fails() {
    let mutated = |from: &str, to: &str| serve_violations(&mutated_template(from, to));
    let idle = "        - Key: idle_timeout.timeout_seconds\n          Value: \"50\"";
    for too_short_or_long in ["10", "60", "120"] {
        let problems = mutated(
            idle,
            &idle.replace("\"50\"", &format!("\"{too_short_or_long}\"")),
        );
        assert_reported(&problems, &format!("idle timeout {too_short_or_long}s"));
    }
    let problems = mutated(
        "            - Name: WORLDFLEET_SERVE_HEADER_TIMEOUT_SECS\n              Value: \"60\"\n",
        "",
    );
    assert_reported(&problems, "10s head timeout");
    let problems = mutated("HealthCheckPath: /ready", "HealthCheckPath: /health");
    assert_reported(&problems, "expected /ready");
    let problems = mutated(
        "        - Key: deregistration_delay.timeout_seconds\n          Value: \"15\"",
        "        - Key: deregistration_delay.timeout_seconds\n          Value: \"5\"",
    );
    assert_reported(&problems, "deregistration delay 5s");
    let problems = mutated(
        "            - Name: WORLDFLEET_SERVE_BIND\n              Value: 0.0.0.0:8080\n            - Name: WORLDFLEET_STACK",
        "            - Name: WORLDFLEET_SERVE_BIND\n              Value: 127.0.0.1:8080\n            - Name: WORLDFLEET_STACK",
    );
    assert_reported(&problems, "WORLDFLEET_SERVE_BIND");
    let problems = mutated(
        "          Secrets:\n            - Name: WORLDFLEET_GATEWAY_KEYS\n              ValueFrom: !Ref ServeGatewayKeysSecretArn\n",
        "",
    );
    assert_reported(&problems, "must come from Secrets");
    let problems = mutated(
        "              Value: info\n          Secrets:\n",
        "              Value: info\n            - Name: WORLDFLEET_GATEWAY_KEYS\n              Value: gw-1=00112233445566778899aabbccddeeff\n          Secrets:\n",
    );
    assert_reported(&problems, "must come from Secrets");
    let problems = mutated("            - --aws\n", "");
    assert_reported(&problems, "no ECS task runs");
}

#[test]
fn service_roles_are_least_privilege() {
    let template = Template::from_path(template_path()).expect("template parses");
    let problems = service_role_violations(&template);
    assert!(
        problems.is_empty(),
        "service role violations:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn a_wildcard_in_a_service_role_fails() {
    let mutated = |from: &str, to: &str| service_role_violations(&mutated_template(from, to));
    let problems = mutated(
        "                  - ecs:DiscoverPollEndpoint",
        "                  - \"ecs:*\"",
    );
    assert_reported(&problems, "wildcard action ecs:*");
    let problems = mutated(
        "                Resource: !GetAtt InferenceCluster.Arn",
        "                Resource: \"*\"",
    );
    assert_reported(&problems, "wildcard resource for");
    let problems = mutated(
        "container-instance/${InferenceCluster}/*",
        "container-instance/*",
    );
    assert_reported(&problems, "scoped under one");
    let problems = mutated(
        "the execution role's one secret grant stays one secret.\n    AllowedPattern: '^(arn:aws[a-z-]{0,20}:secretsmanager:",
        "the execution role's one secret grant stays one secret.\n    AllowedPattern: '^(arn:aws[a-z-]*:secretsmanager:",
    );
    assert_reported(&problems, "ServeGatewayKeysSecretArn is not pinned");
}

#[test]
fn template_grants_each_stage_exactly_what_it_uses() {
    let template = Template::from_path(template_path()).expect("template parses");
    let problems = violations(&template);
    assert!(
        problems.is_empty(),
        "template violations:\n  {}",
        problems.join("\n  ")
    );
}

#[test]
fn local_deploy_declares_every_queue_and_table_of_the_domain() {
    let template = Template::from_path(template_path()).unwrap();
    let declared = declared_resources(&template).unwrap();
    let queues: BTreeSet<String> = declared
        .queues
        .iter()
        .map(|spec| spec.name.clone())
        .collect();
    let mut wanted: BTreeSet<String> = work_queues()
        .iter()
        .map(|queue| (*queue).to_owned())
        .collect();
    wanted.extend(work_queues().iter().map(|queue| dead_letter_queue(queue)));
    assert_eq!(queues, wanted);
    let tables: BTreeSet<&str> = declared
        .tables
        .iter()
        .map(|spec| spec.name.as_str())
        .collect();
    assert_eq!(tables, all_tables());
    for spec in &declared.queues {
        if work_queues().contains(&spec.name.as_str()) {
            assert_eq!(spec.max_receive_count, 5);
            assert_eq!(spec.dead_letter_queue, Some(dead_letter_queue(&spec.name)));
        }
    }
}

/// The real template with one textual change applied (whose anchor `from` must be there).
fn mutated_template(from: &str, to: &str) -> Template {
    let original = template_text();
    assert!(
        original.contains(from),
        "mutation anchor {from:?} not in the template"
    );
    let mutated = original.replacen(from, to, 1);
    Template::parse(&mutated).expect("mutated template parses")
}

/// Applies a textual change to the real template and returns what the checker says.
fn violations_after(from: &str, to: &str) -> Vec<String> {
    violations(&mutated_template(from, to))
}

/// Asserts that some problem mentions `expected`.
#[track_caller]
fn assert_reported(problems: &[String], expected: &str) {
    assert!(
        problems.iter().any(|problem| problem.contains(expected)),
        "{problems:?}"
    );
}

#[test]
fn a_wildcard_resource_fails() {
    let problems = violations_after(
        "                Resource: !GetAtt IntakeQueue.Arn",
        "                Resource: \"*\"",
    );
    assert_reported(&problems, "wildcard resource");
}

#[test]
fn a_wildcard_action_fails() {
    let problems = violations_after(
        "                  - sqs:SendMessage",
        "                  - \"sqs:*\"",
    );
    assert_reported(&problems, "wildcard action");
}

#[test]
fn access_to_an_unused_table_or_queue_fails() {
    let problems = violations_after(
        "                  - !GetAtt LedgerTable.Arn",
        "                  - !GetAtt LedgerTable.Arn\n                  - !GetAtt FeedsTable.Arn",
    );
    assert_reported(&problems, "intake may touch feeds");
    let problems = violations_after(
        "                  - !GetAtt ClassifyQueue.Arn",
        "                  - !GetAtt DistributeQueue.Arn",
    );
    assert_reported(&problems, "distribute.fifo");
    assert_reported(&problems, "lacks permissions on classify.fifo");
}

#[test]
fn a_weak_queue_fails() {
    let problems = violations_after("        maxReceiveCount: 5", "        maxReceiveCount: 50");
    assert_reported(&problems, "maxReceiveCount");
    let problems = violations_after(
        "      VisibilityTimeout: 180",
        "      VisibilityTimeout: 60",
    );
    assert_reported(&problems, "visibility 60s");
    let problems = violations_after("            BatchSize: 10", "            BatchSize: 11");
    assert_reported(&problems, "batch size");
}

#[test]
fn a_fifo_timer_queue_or_a_standard_work_queue_fails() {
    let problems = violations_after(
        "      QueueName: !Sub \"${AWS::StackName}-ecology-tick\"\n",
        "      QueueName: !Sub \"${AWS::StackName}-ecology-tick\"\n      FifoQueue: true\n",
    );
    assert_reported(&problems, "ecology-tick: FifoQueue");
    let problems = violations_after(
        "      QueueName: !Sub \"${AWS::StackName}-market.fifo\"\n      FifoQueue: true\n",
        "      QueueName: !Sub \"${AWS::StackName}-market.fifo\"\n",
    );
    assert_reported(&problems, "market.fifo: FifoQueue");
}

#[test]
fn a_watchdog_that_writes_or_misses_a_timer_queue_fails() {
    let problems = violations_after(
        "                  - !GetAtt TimersTable.Arn\n                  - !GetAtt EcologyTable.Arn",
        "                  - !GetAtt TimersTable.Arn\n                  - !GetAtt EcologyTable.Arn\n                  - !GetAtt LedgerTable.Arn",
    );
    assert_reported(&problems, "watchdog may touch ledger");
    let problems = violations_after(
        "                  - !GetAtt EcologyTickQueue.Arn\n                  - !GetAtt PriceWindowQueue.Arn",
        "                  - !GetAtt PriceWindowQueue.Arn",
    );
    assert_reported(&problems, "watchdog lacks permissions on ecology-tick");
}

#[test]
fn a_feed_api_that_writes_more_opens_without_iam_or_adds_a_route_fails() {
    let writes_more = violations_after(
        "                  - dynamodb:PutItem\n                Resource: !GetAtt FeedsTable.Arn",
        "                  - dynamodb:PutItem\n                  - dynamodb:DeleteItem\n                Resource: !GetAtt FeedsTable.Arn",
    );
    assert_reported(&writes_more, "feeds on feeds");
    let open = violations_after(
        "        DefaultAuthorizer: AWS_IAM",
        "        DefaultAuthorizer: NONE",
    );
    assert_reported(&open, "IAM authorization");
    let extra_route = violations_after(
        "            Path: /v1/feeds/{feed}\n            Method: GET",
        "            Path: /v1/feeds/{feed}\n            Method: DELETE",
    );
    assert_reported(&extra_route, "routes");
}

/// The gateway keys: never a plain variable of any function (nor of `Globals`), only intake
/// told where the secret is (the same secret its role may read), no key written in the
/// template (the created secret's value is generated), and the ARN parameter pinned to one
/// secret.
fn key_violations(template: &Template) -> Vec<String> {
    let mut problems = Vec::new();
    let variables_of = |environment: Option<&Value>| -> BTreeMap<String, Value> {
        match environment
            .and_then(|environment| environment.get("Variables"))
            .and_then(Value::as_mapping)
        {
            Some(variables) => variables
                .iter()
                .filter_map(|(name, value)| Some((name.as_str()?.to_owned(), value.clone())))
                .collect(),
            None => BTreeMap::new(),
        }
    };
    if variables_of(template.function_global("Environment")).contains_key("WORLDFLEET_GATEWAY_KEYS")
    {
        problems.push("Globals: WORLDFLEET_GATEWAY_KEYS is a plain variable".to_owned());
    }
    let mut intake_seen = false;
    for function in template.resources_of("AWS::Serverless::Function") {
        let name = function
            .property("FunctionName")
            .and_then(logical_name)
            .unwrap_or_default();
        let variables = variables_of(function.property("Environment"));
        if variables.contains_key("WORLDFLEET_GATEWAY_KEYS") {
            problems.push(format!(
                "{}: WORLDFLEET_GATEWAY_KEYS is a plain variable; the keys come from \
                 WORLDFLEET_GATEWAY_KEYS_SECRET_ARN's secret",
                function.id
            ));
        }
        let secret = variables.get("WORLDFLEET_GATEWAY_KEYS_SECRET_ARN");
        if name == "intake" {
            intake_seen = true;
            let target = secret.and_then(|secret| secret_target(template, secret));
            if target.as_deref() != Some(GATEWAY_KEYS_SECRET) {
                problems.push(format!(
                    "{}: WORLDFLEET_GATEWAY_KEYS_SECRET_ARN must name {GATEWAY_KEYS_SECRET}, \
                     the secret its role reads (found {target:?})",
                    function.id
                ));
            }
            if !variables.contains_key("WORLDFLEET_GATEWAY_KEYS_REFRESH_SECS") {
                problems.push(format!(
                    "{}: WORLDFLEET_GATEWAY_KEYS_REFRESH_SECS is not set",
                    function.id
                ));
            }
        } else if secret.is_some() {
            problems.push(format!(
                "{}: only intake reads the gateway keys",
                function.id
            ));
        }
    }
    if !intake_seen {
        problems.push("no intake function".to_owned());
    }
    for secret in template.resources_of("AWS::SecretsManager::Secret") {
        if secret.property("SecretString").is_some() {
            problems.push(format!(
                "{}: SecretString writes a key into the template; generate it",
                secret.id
            ));
        }
    }
    if !pins_one_arn(template, "GatewayKeysSecretArn") {
        problems.push("GatewayKeysSecretArn is not pinned to one ARN".to_owned());
    }
    problems
}

#[test]
fn gateway_keys_come_from_one_secret_only_intake_reads() {
    let template = Template::from_path(template_path()).unwrap();
    let problems = key_violations(&template);
    assert!(problems.is_empty(), "{problems:#?}");
}

fn key_violations_after(from: &str, to: &str) -> Vec<String> {
    let template = mutated_template(from, to);
    let mut problems = key_violations(&template);
    problems.extend(violations(&template));
    problems
}

#[test]
fn plain_keys_a_second_reader_or_a_written_key_fails() {
    let anchor = "          WORLDFLEET_GATEWAY_KEYS_REFRESH_SECS: !Ref GatewayKeysRefreshSecs\n";
    let problems = key_violations_after(
        anchor,
        &format!(
            "{anchor}          WORLDFLEET_GATEWAY_KEYS: gw-1=00112233445566778899aabbccddeeff\n"
        ),
    );
    assert_reported(&problems, "WORLDFLEET_GATEWAY_KEYS is a plain variable");

    let problems = key_violations_after(
        "          WORLDFLEET_QUEUE_URLS: !Sub \"compose.fifo=${ComposeQueue}\"\n",
        "          WORLDFLEET_QUEUE_URLS: !Sub \"compose.fifo=${ComposeQueue}\"\n          WORLDFLEET_GATEWAY_KEYS_SECRET_ARN: !Ref GatewayKeysSecretArn\n",
    );
    assert_reported(&problems, "only intake reads the gateway keys");

    let problems = key_violations_after(
        "      GenerateSecretString:\n",
        "      SecretString: '{\"gw-1\": \"00112233445566778899aabbccddeeff\"}'\n      GenerateSecretString:\n",
    );
    assert_reported(&problems, "SecretString writes a key");

    let problems = key_violations_after(
        "                Resource: !If [CreateGatewayKeysSecret, !Ref GatewayKeysSecret, !Ref GatewayKeysSecretArn]",
        "                Resource: \"*\"",
    );
    assert_reported(&problems, "is not one secret of this template");
    assert_reported(&problems, "lacks permissions on secret:");

    let problems = key_violations_after(
        "                  - !GetAtt IdempotencyTable.Arn\n",
        "                  - !GetAtt IdempotencyTable.Arn\n              - Effect: Allow\n                Action:\n                  - secretsmanager:GetSecretValue\n                Resource: !Ref GatewayKeysSecret\n",
    );
    assert_reported(&problems, "which it does not use");

    let problems = key_violations_after(
        "intake's one secret grant stays one secret.\n    AllowedPattern: '^(arn:aws[a-z-]{0,20}:",
        "intake's one secret grant stays one secret.\n    AllowedPattern: '^(arn:aws[a-z-]*:",
    );
    assert_reported(&problems, "GatewayKeysSecretArn is not pinned");
    assert_reported(&problems, "is not one secret of this template");
}
