//! Translation of the port's [`Condition`], [`Update`] and sort-key ranges into DynamoDB
//! expressions, with every name and value behind a `#n`/`:v` placeholder (so reserved words
//! such as `ttl`, `name` or `count` need no special care).
//!
//! The port's reference semantics ([`Condition::evaluate`], [`Update::apply`]) decide what the
//! expressions must mean; where DynamoDB's operators differ (ordering operators on types that
//! have no order) the translation spells out the reference result instead.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use worldfleet_ports::{Comparison, Condition, SortKeyRange, Update, Value};

use super::value::to_attribute;

/// Accumulates placeholders while expressions are built for one request.
#[derive(Debug, Default)]
pub struct ExpressionBuilder {
    placeholders: HashMap<String, String>,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl ExpressionBuilder {
    /// An empty builder.
    pub fn new() -> Self {
        Self::default()
    }

    /// The placeholder of an attribute name (one per distinct name).
    pub fn name(&mut self, attribute: &str) -> String {
        if let Some(placeholder) = self.placeholders.get(attribute) {
            return placeholder.clone();
        }
        let placeholder = format!("#n{}", self.placeholders.len());
        self.placeholders
            .insert(attribute.to_owned(), placeholder.clone());
        self.names.insert(placeholder.clone(), attribute.to_owned());
        placeholder
    }

    /// The placeholder of a value (one per use).
    pub fn value(&mut self, value: AttributeValue) -> String {
        let placeholder = format!(":v{}", self.values.len());
        self.values.insert(placeholder.clone(), value);
        placeholder
    }

    /// `ExpressionAttributeNames`, `None` when empty (DynamoDB refuses an empty map).
    pub fn names(&self) -> Option<HashMap<String, String>> {
        (!self.names.is_empty()).then(|| self.names.clone())
    }

    /// `ExpressionAttributeValues`, `None` when empty.
    pub fn values(&self) -> Option<HashMap<String, AttributeValue>> {
        (!self.values.is_empty()).then(|| self.values.clone())
    }

    fn always(&mut self) -> String {
        let pk = self.name("pk");
        format!("(attribute_exists({pk}) OR attribute_not_exists({pk}))")
    }

    fn never(&mut self) -> String {
        let pk = self.name("pk");
        format!("(attribute_exists({pk}) AND attribute_not_exists({pk}))")
    }

    /// A `ConditionExpression`.
    pub fn condition(&mut self, condition: &Condition) -> String {
        match condition {
            Condition::ItemExists => format!("attribute_exists({})", self.name("pk")),
            Condition::ItemNotExists => format!("attribute_not_exists({})", self.name("pk")),
            Condition::Exists(attribute) => format!("attribute_exists({})", self.name(attribute)),
            Condition::NotExists(attribute) => {
                format!("attribute_not_exists({})", self.name(attribute))
            }
            Condition::Compare {
                attribute,
                op,
                value,
            } => self.comparison(attribute, *op, value),
            Condition::And(conditions) => self.join(conditions, "AND"),
            Condition::Or(conditions) => self.join(conditions, "OR"),
            Condition::Not(inner) => format!("(NOT {})", self.condition(inner)),
        }
    }

    fn join(&mut self, conditions: &[Condition], operator: &str) -> String {
        match conditions {
            [] if operator == "AND" => self.always(),
            [] => self.never(),
            [single] => self.condition(single),
            many => {
                let parts: Vec<String> = many.iter().map(|part| self.condition(part)).collect();
                format!("({})", parts.join(&format!(" {operator} ")))
            }
        }
    }

    fn comparison(&mut self, attribute: &str, op: Comparison, value: &Value) -> String {
        let ordered = matches!(value, Value::S(_) | Value::N(_) | Value::B(_));
        let symbol = match op {
            Comparison::Eq => "=",
            Comparison::Ne => "<>",
            // Booleans, nulls, lists and maps have no order: the reference semantics make
            // `<=`/`>=` mean equality and `<`/`>` never hold, where DynamoDB would refuse.
            Comparison::Le | Comparison::Ge if !ordered => "=",
            Comparison::Lt | Comparison::Gt if !ordered => return self.never(),
            Comparison::Lt => "<",
            Comparison::Le => "<=",
            Comparison::Gt => ">",
            Comparison::Ge => ">=",
        };
        // Placeholders only now: DynamoDB refuses names or values the expression leaves unused.
        let name = self.name(attribute);
        let placeholder = self.value(to_attribute(value));
        format!("{name} {symbol} {placeholder}")
    }

    /// An `UpdateExpression`; the update must have passed [`Update::validate`].
    pub fn update(&mut self, update: &Update) -> String {
        let mut sets = Vec::new();
        for (attribute, value) in &update.set {
            let name = self.name(attribute);
            let value = self.value(to_attribute(value));
            sets.push(format!("{name} = {value}"));
        }
        for (attribute, value) in &update.set_if_absent {
            let name = self.name(attribute);
            let value = self.value(to_attribute(value));
            sets.push(format!("{name} = if_not_exists({name}, {value})"));
        }
        let adds: Vec<String> = update
            .add
            .iter()
            .map(|(attribute, delta)| {
                let name = self.name(attribute);
                let value = self.value(AttributeValue::N(delta.to_string()));
                format!("{name} {value}")
            })
            .collect();
        let removes: Vec<String> = update
            .remove
            .iter()
            .map(|attribute| self.name(attribute))
            .collect();
        let mut clauses = Vec::new();
        if !sets.is_empty() {
            clauses.push(format!("SET {}", sets.join(", ")));
        }
        if !adds.is_empty() {
            clauses.push(format!("ADD {}", adds.join(", ")));
        }
        if !removes.is_empty() {
            clauses.push(format!("REMOVE {}", removes.join(", ")));
        }
        clauses.join(" ")
    }

    /// A `KeyConditionExpression` for one partition and a (normalised) sort-key range.
    pub fn key_condition(&mut self, pk: &str, range: &SortKeyRange) -> String {
        let pk_name = self.name("pk");
        let pk_value = self.value(AttributeValue::S(pk.to_owned()));
        let partition = format!("{pk_name} = {pk_value}");
        let bound = |this: &mut Self, symbol: &str, sk: &str| {
            let sk_name = this.name("sk");
            let sk_value = this.value(AttributeValue::S(sk.to_owned()));
            format!("{partition} AND {sk_name} {symbol} {sk_value}")
        };
        match range {
            SortKeyRange::All => partition.clone(),
            SortKeyRange::Prefix(prefix) => {
                let sk_name = self.name("sk");
                let sk_value = self.value(AttributeValue::S(prefix.clone()));
                format!("{partition} AND begins_with({sk_name}, {sk_value})")
            }
            SortKeyRange::Between(low, high) => {
                let sk_name = self.name("sk");
                let low = self.value(AttributeValue::S(low.clone()));
                let high = self.value(AttributeValue::S(high.clone()));
                format!("{partition} AND {sk_name} BETWEEN {low} AND {high}")
            }
            SortKeyRange::GreaterThan(sk) => bound(self, ">", sk),
            SortKeyRange::AtLeast(sk) => bound(self, ">=", sk),
            SortKeyRange::LessThan(sk) => bound(self, "<", sk),
            SortKeyRange::AtMost(sk) => bound(self, "<=", sk),
        }
    }
}

/// What a sort-key range asks of DynamoDB once bounds it cannot take are resolved.
#[derive(Debug, Clone, PartialEq)]
pub enum NormalisedRange {
    /// Query with this range.
    Query(SortKeyRange),
    /// The range holds no sort key: answer with an empty page.
    Empty,
}

/// Resolves ranges DynamoDB refuses but the port defines: empty-string bounds (sort keys are
/// never empty) and `BETWEEN` with the bounds reversed (empty).
pub fn normalise_range(range: &SortKeyRange) -> NormalisedRange {
    use NormalisedRange::{Empty, Query};
    match range {
        SortKeyRange::Prefix(prefix) if prefix.is_empty() => Query(SortKeyRange::All),
        SortKeyRange::GreaterThan(bound) | SortKeyRange::AtLeast(bound) if bound.is_empty() => {
            Query(SortKeyRange::All)
        }
        SortKeyRange::LessThan(bound) | SortKeyRange::AtMost(bound) if bound.is_empty() => Empty,
        SortKeyRange::Between(low, high) if low > high || high.is_empty() => Empty,
        SortKeyRange::Between(low, high) if low.is_empty() => {
            Query(SortKeyRange::AtMost(high.clone()))
        }
        other => Query(other.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_use_placeholders_throughout() {
        let mut builder = ExpressionBuilder::new();
        let condition = Condition::And(vec![
            Condition::ItemNotExists,
            Condition::Or(vec![
                Condition::NotExists("ttl".into()),
                Condition::compare("ttl", Comparison::Lt, 100),
            ]),
            Condition::Not(Box::new(Condition::eq("name", "x"))),
        ]);
        let text = builder.condition(&condition);
        assert_eq!(
            text,
            "(attribute_not_exists(#n0) AND (attribute_not_exists(#n1) OR #n1 < :v0) AND (NOT #n2 = :v1))"
        );
        let names = builder.names().unwrap();
        assert_eq!(names["#n1"], "ttl");
        assert_eq!(
            builder.values().unwrap()[":v0"],
            AttributeValue::N("100".into())
        );
    }

    #[test]
    fn unordered_comparisons_follow_the_reference() {
        let mut builder = ExpressionBuilder::new();
        assert_eq!(
            builder.condition(&Condition::compare("flag", Comparison::Ge, true)),
            "#n0 = :v0"
        );
        assert!(
            builder
                .condition(&Condition::compare("flag", Comparison::Lt, true))
                .contains("AND attribute_not_exists")
        );
        let mut lonely = ExpressionBuilder::new();
        lonely.condition(&Condition::compare("flag", Comparison::Gt, true));
        assert_eq!(
            lonely.names().unwrap().len(),
            1,
            "only #pk, no unused placeholder"
        );
        assert!(lonely.values().is_none());
        assert!(builder.condition(&Condition::And(vec![])).contains(" OR "));
        assert!(builder.condition(&Condition::Or(vec![])).contains(" AND "));
    }

    #[test]
    fn updates_group_clauses() {
        let mut builder = ExpressionBuilder::new();
        let update = Update::new()
            .set("a", "x")
            .set_if_absent("created", 5)
            .add("count", 2)
            .remove("old");
        assert_eq!(
            builder.update(&update),
            "SET #n0 = :v0, #n1 = if_not_exists(#n1, :v1) ADD #n2 :v2 REMOVE #n3"
        );
    }

    #[test]
    fn key_conditions_and_ranges() {
        let mut builder = ExpressionBuilder::new();
        assert_eq!(
            builder.key_condition("p", &SortKeyRange::Prefix("feed#".into())),
            "#n0 = :v0 AND begins_with(#n1, :v1)"
        );
        assert_eq!(
            normalise_range(&SortKeyRange::Between("b".into(), "a".into())),
            NormalisedRange::Empty
        );
        assert_eq!(
            normalise_range(&SortKeyRange::Prefix(String::new())),
            NormalisedRange::Query(SortKeyRange::All)
        );
        assert_eq!(
            normalise_range(&SortKeyRange::AtMost(String::new())),
            NormalisedRange::Empty
        );
    }
}
