//! Reading `infra/template.yaml` (AWS SAM / CloudFormation) without CloudFormation.
//!
//! The template is the one source of truth for which queues and tables exist; local
//! deployment and the policy test both read it through these helpers. CloudFormation's
//! short-form tags (`!Ref`, `!GetAtt`, `!Sub`, …) arrive from `serde_yaml` as tagged values
//! and are understood in both short and long (`Fn::GetAtt`) form.

use std::path::Path;

use serde_yaml::Value;

use crate::error::{AwsError, Result};

/// The name prefix every physical name in the template carries.
pub const STACK_NAME_PREFIX: &str = "${AWS::StackName}-";

/// A parsed template.
#[derive(Debug, Clone)]
pub struct Template {
    root: Value,
}

/// One entry of the template's `Resources`.
#[derive(Debug, Clone, Copy)]
pub struct Resource<'a> {
    /// The logical id (`IntakeQueue`).
    pub id: &'a str,
    /// The resource type (`AWS::SQS::Queue`).
    pub kind: &'a str,
    /// Its `Properties` (`Null` when absent).
    pub properties: &'a Value,
}

impl<'a> Resource<'a> {
    /// A property by name.
    pub fn property(&self, name: &str) -> Option<&'a Value> {
        self.properties.get(name)
    }
}

impl Template {
    /// Reads and parses a template file.
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| AwsError::TemplateIo {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Parses template text.
    pub fn parse(text: &str) -> Result<Self> {
        let root: Value = serde_yaml::from_str(text)?;
        if !root.get("Resources").is_some_and(Value::is_mapping) {
            return Err(AwsError::Template("no Resources mapping".into()));
        }
        Ok(Self { root })
    }

    /// The whole document.
    pub fn root(&self) -> &Value {
        &self.root
    }

    /// Every resource, in template order.
    pub fn resources(&self) -> Vec<Resource<'_>> {
        let Some(Value::Mapping(resources)) = self.root.get("Resources") else {
            return Vec::new();
        };
        resources
            .iter()
            .filter_map(|(id, body)| {
                Some(Resource {
                    id: id.as_str()?,
                    kind: body.get("Type")?.as_str()?,
                    properties: body.get("Properties").unwrap_or(&Value::Null),
                })
            })
            .collect()
    }

    /// Resources of one type.
    pub fn resources_of(&self, kind: &str) -> Vec<Resource<'_>> {
        self.resources()
            .into_iter()
            .filter(|resource| resource.kind == kind)
            .collect()
    }

    /// A resource by logical id.
    pub fn resource(&self, id: &str) -> Option<Resource<'_>> {
        self.resources()
            .into_iter()
            .find(|resource| resource.id == id)
    }

    /// A setting of `Globals.Function`, if the template has one.
    pub fn function_global(&self, name: &str) -> Option<&Value> {
        self.root.get("Globals")?.get("Function")?.get(name)
    }

    /// The function deployed as `${AWS::StackName}-<name>` (every function's `FunctionName`
    /// has that form; `template_policy` holds the template to it), e.g. `price-window`.
    pub fn function_named(&self, name: &str) -> Option<Resource<'_>> {
        self.resources_of("AWS::Serverless::Function")
            .into_iter()
            .find(|function| {
                function
                    .property("FunctionName")
                    .and_then(logical_name)
                    .is_some_and(|logical| logical == name)
            })
    }

    /// A function's memory size in MB: its own `MemorySize`, else the global one.
    pub fn function_memory_mb(&self, function: &str) -> Option<u64> {
        self.resource(function)
            .and_then(|resource| resource.property("MemorySize"))
            .or_else(|| self.function_global("MemorySize"))
            .and_then(as_u64)
    }

    /// The `Default` of a template parameter, if it has one.
    pub fn parameter_default(&self, name: &str) -> Option<&Value> {
        self.root.get("Parameters")?.get(name)?.get("Default")
    }
}

/// The tag name of a tagged value (`!GetAtt` → `GetAtt`).
fn tag_of(value: &Value) -> Option<(String, &Value)> {
    match value {
        Value::Tagged(tagged) => Some((
            tagged.tag.to_string().trim_start_matches('!').to_owned(),
            &tagged.value,
        )),
        _ => None,
    }
}

/// An intrinsic function call in either form: `!Name arg` or `{ "Fn::Name": arg }`/`{ Ref: arg }`.
pub fn intrinsic(value: &Value) -> Option<(String, &Value)> {
    if let Some(found) = tag_of(value) {
        return Some(found);
    }
    let Value::Mapping(map) = value else {
        return None;
    };
    if map.len() != 1 {
        return None;
    }
    let (name, argument) = map.iter().next()?;
    let name = name.as_str()?;
    let function = name
        .strip_prefix("Fn::")
        .or((name == "Ref").then_some(name))?;
    Some((function.to_owned(), argument))
}

/// The logical id a `Ref` or `GetAtt` points at (`!GetAtt IntakeQueue.Arn` → `IntakeQueue`).
pub fn referenced_resource(value: &Value) -> Option<String> {
    let (function, argument) = intrinsic(value)?;
    match function.as_str() {
        "Ref" => argument.as_str().map(str::to_owned),
        "GetAtt" => match argument {
            Value::String(text) => text.split('.').next().map(str::to_owned),
            Value::Sequence(parts) => parts.first()?.as_str().map(str::to_owned),
            _ => None,
        },
        _ => None,
    }
}

/// The attribute a `GetAtt` reads (`!GetAtt IntakeQueue.Arn` → `Arn`).
pub fn referenced_attribute(value: &Value) -> Option<String> {
    let (function, argument) = intrinsic(value)?;
    if function != "GetAtt" {
        return None;
    }
    match argument {
        Value::String(text) => text
            .split_once('.')
            .map(|(_, attribute)| attribute.to_owned()),
        Value::Sequence(parts) => parts.get(1)?.as_str().map(str::to_owned),
        _ => None,
    }
}

/// The logical name in a physical-name property: `!Sub "${AWS::StackName}-intake.fifo"`
/// gives `intake.fifo`; a plain string is taken as it is.
pub fn logical_name(value: &Value) -> Option<String> {
    // Match the variant, not `as_str`: serde_yaml's accessors look through tags, which would
    // read `!Sub "${AWS::StackName}-x"` as the plain string.
    if let Value::String(text) = value {
        return Some(text.clone());
    }
    let (function, argument) = intrinsic(value)?;
    if function != "Sub" {
        return None;
    }
    let pattern = match argument {
        Value::String(text) => text.as_str(),
        Value::Sequence(parts) => parts.first()?.as_str()?,
        _ => return None,
    };
    let logical = pattern.strip_prefix(STACK_NAME_PREFIX)?;
    (!logical.contains("${")).then(|| logical.to_owned())
}

/// A whole number, written as a number or a numeric string.
pub fn as_u64(value: &Value) -> Option<u64> {
    match value {
        Value::Number(number) => number.as_u64(),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

/// A boolean, written as a boolean or the string `true`/`false`.
pub fn as_bool(value: &Value) -> Option<bool> {
    match value {
        Value::Bool(flag) => Some(*flag),
        Value::String(text) => text.parse().ok(),
        _ => None,
    }
}

/// One or many strings (IAM lets `Action` and `Resource` be either).
pub fn string_list(value: &Value) -> Vec<&Value> {
    match value {
        Value::Sequence(values) => values.iter().collect(),
        other => vec![other],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = r#"
Resources:
  IntakeQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: !Sub "${AWS::StackName}-intake.fifo"
      RedrivePolicy:
        deadLetterTargetArn: !GetAtt IntakeDeadLetterQueue.Arn
        maxReceiveCount: 5
  IntakeDeadLetterQueue:
    Type: AWS::SQS::Queue
    Properties:
      QueueName:
        Fn::Sub: "${AWS::StackName}-intake-dlq.fifo"
  Other:
    Type: AWS::SQS::Queue
    Properties:
      QueueName: { "Fn::GetAtt": [Thing, Name] }
"#;

    #[test]
    fn short_and_long_forms_are_read() {
        let template = Template::parse(SAMPLE).unwrap();
        let queues = template.resources_of("AWS::SQS::Queue");
        assert_eq!(queues.len(), 3);
        let intake = template.resource("IntakeQueue").unwrap();
        assert_eq!(
            logical_name(intake.property("QueueName").unwrap()).as_deref(),
            Some("intake.fifo")
        );
        let target = intake
            .property("RedrivePolicy")
            .and_then(|policy| policy.get("deadLetterTargetArn"))
            .unwrap();
        assert_eq!(
            referenced_resource(target).as_deref(),
            Some("IntakeDeadLetterQueue")
        );
        assert_eq!(referenced_attribute(target).as_deref(), Some("Arn"));
        let dead = template.resource("IntakeDeadLetterQueue").unwrap();
        assert_eq!(
            logical_name(dead.property("QueueName").unwrap()).as_deref(),
            Some("intake-dlq.fifo")
        );
        let other = template.resource("Other").unwrap();
        assert_eq!(logical_name(other.property("QueueName").unwrap()), None);
        assert_eq!(
            referenced_resource(other.property("QueueName").unwrap()).as_deref(),
            Some("Thing")
        );
    }

    #[test]
    fn memory_sizes_and_parameter_defaults() {
        let template = Template::parse(
            r#"
Parameters:
  ServeTaskCpu: { Type: String, Default: "1024" }
Globals:
  Function: { MemorySize: 256 }
Resources:
  IntakeFunction: { Type: AWS::Serverless::Function, Properties: { MemorySize: 512 } }
  ClassifyFunction: { Type: AWS::Serverless::Function, Properties: {} }
"#,
        )
        .unwrap();
        assert_eq!(template.function_memory_mb("IntakeFunction"), Some(512));
        assert_eq!(template.function_memory_mb("ClassifyFunction"), Some(256));
        assert_eq!(
            template.parameter_default("ServeTaskCpu").and_then(as_u64),
            Some(1024)
        );
        assert!(template.parameter_default("Missing").is_none());
    }

    #[test]
    fn functions_are_found_by_their_deployed_name() {
        let template = Template::from_path(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../infra/template.yaml"
        ))
        .unwrap();
        let window = template.function_named("price-window").unwrap();
        assert_eq!(window.id, "PriceWindowFunction");
        assert_eq!(template.function_memory_mb(window.id), Some(256));
        assert!(template.function_named("nothing").is_none());
    }

    #[test]
    fn bad_templates_are_errors() {
        assert!(Template::parse("just text").is_err());
        assert!(Template::parse("Resources: [1, 2]").is_err());
        assert!(Template::parse("{ unbalanced").is_err());
    }
}
