//! Every configuration variable, in one table: each stage's (declared beside the settings
//! struct that reads it) and the process-wide ones the run modes read.
//!
//! [`markdown_table`] renders the README's configuration table; a test checks the README
//! holds exactly that table, and another that [`StageSettings::from_vars`] reads exactly the
//! stage variables declared here — so no variable is documented that the code does not read,
//! and none is read that is undocumented.
//!
//! [`StageSettings::from_vars`]: crate::StageSettings::from_vars

use worldfleet_kit::Variable;

/// Each stage's variables, by the stage that reads them.
pub const ALL: &[(&str, &[Variable])] = &[
    ("intake", worldfleet_intake::config::VARIABLES),
    ("classify", worldfleet_classify::config::VARIABLES),
    ("compose", worldfleet_compose::config::VARIABLES),
    ("distribute", worldfleet_distribute::rules::VARIABLES),
    ("prune, watchdog", worldfleet_prune::VARIABLES),
    ("ecology", worldfleet_ecology::shell::VARIABLES),
];

/// Variables read by the run modes rather than a stage.
pub const PROCESS: &[Variable] = &[
    Variable {
        name: "WORLDFLEET_LOG",
        default: "warn (CLI), info (Lambda)",
        meaning: "log filter (`EnvFilter` syntax) of every binary; `RUST_LOG` is read when unset",
    },
    Variable {
        name: "AWS_LAMBDA_LOG_LEVEL",
        default: "set by Lambda",
        meaning: "Lambda's advanced logging level; used when `WORLDFLEET_LOG` is unset",
    },
    Variable {
        name: "AWS_LAMBDA_LOG_FORMAT",
        default: "JSON",
        meaning: "`Text` for plain-text Lambda logs, JSON otherwise",
    },
    Variable {
        name: "WORLDFLEET_EMBEDDINGS_MODEL_DIR",
        default: "models/all-MiniLM-L6-v2",
        meaning: "embedded run: the in-process embedding model, when no pool URL is set",
    },
    Variable {
        name: "WORLDFLEET_STORE_CACHE_MIB",
        default: "32",
        meaning: "embedded store (`run`, `bench`, `serve`): fjall's block cache in MiB, 1–4096",
    },
    Variable {
        name: "WORLDFLEET_STORE_MEMTABLE_MIB",
        default: "8",
        meaning: "embedded store: one keyspace's memtable in MiB before it is flushed, 1–256 (six keyspaces, up to four sealed memtables each waiting for the flush; fixed when the store is created)",
    },
    Variable {
        name: "WORLDFLEET_STORE_TABLE_MIB",
        default: "16",
        meaning: "embedded store: the size compaction cuts tables at, in MiB, 1–256 (smaller tables: smaller compactions, a flatter p99 over hours, ~7 % less burst throughput; fixed when the store is created)",
    },
    Variable {
        name: "WORLDFLEET_STORE_WORKERS",
        default: "the cores, 3 to 4",
        meaning: "embedded store: fjall's flush and compaction threads, 2–16 (with 2, fjall 3.1's flush worker spins on compaction requests while the other compacts)",
    },
    Variable {
        name: "WORLDFLEET_HUGE_PAGES",
        default: "off",
        meaning: "the `worldfleet` command: `on` keeps transparent huge pages for the process; off, the allocator's freed memory is not made resident again by the kernel (a flat RSS over hours)",
    },
    Variable {
        name: "WORLDFLEET_STACK",
        default: "worldfleet",
        meaning: "AWS modes: physical names are `<stack>-<logical>`",
    },
    Variable {
        name: "AWS_REGION",
        default: "the AWS chain, else us-east-1",
        meaning: "AWS modes: the region",
    },
    Variable {
        name: "AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SQS, AWS_ENDPOINT_URL_DYNAMODB, AWS_ENDPOINT_URL_SECRETS_MANAGER",
        default: "AWS",
        meaning: "AWS modes: endpoints (LocalStack, DynamoDB Local)",
    },
    Variable {
        name: "WORLDFLEET_AWS_MAX_ATTEMPTS",
        default: "5",
        meaning: "AWS modes: attempts per request, 1–20",
    },
    Variable {
        name: "WORLDFLEET_QUEUE_URLS",
        default: "resolved by name",
        meaning: "AWS modes: `logical=url,…`, so a role without `sqs:GetQueueUrl` needs none",
    },
];

/// The README's configuration table.
pub fn markdown_table() -> String {
    let mut table = String::from("| variable | read by | default | meaning |\n|---|---|---|---|\n");
    let rows = ALL
        .iter()
        .flat_map(|(stage, list)| list.iter().map(move |variable| (*stage, variable)))
        .chain(PROCESS.iter().map(|variable| ("run modes", variable)));
    for (reader, variable) in rows {
        let names: Vec<String> = variable
            .name
            .split(", ")
            .map(|name| format!("`{name}`"))
            .collect();
        table.push_str(&format!(
            "| {} | {} | {} | {} |\n",
            names.join(", "),
            reader,
            variable.default,
            variable.meaning
        ));
    }
    table
}
