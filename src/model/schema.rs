//! A small JSON Schema validator for the schemas cbtsim itself writes
//! (objects, arrays, strings, numbers, enums; the keywords below). Replies
//! from backends without constrained decoding are checked with it.

use serde_json::Value;

/// Checks `value` against `schema`; the error names the first failing path.
pub fn validate(schema: &Value, value: &Value) -> Result<(), String> {
    check(schema, value, "$")
}

fn check(schema: &Value, value: &Value, path: &str) -> Result<(), String> {
    let fail = |what: String| Err(format!("{path}: {what}"));
    if let Some(options) = schema.get("enum").and_then(Value::as_array)
        && !options.contains(value)
    {
        return fail(format!(
            "{value} is not one of {}",
            Value::from(options.clone())
        ));
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        return fail(format!("expected {constant}"));
    }
    if let Some(kind) = schema.get("type") {
        let kinds: Vec<&str> = match kind {
            Value::String(k) => vec![k.as_str()],
            Value::Array(ks) => ks.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        if !kinds.is_empty() && !kinds.iter().any(|k| is_type(value, k)) {
            return fail(format!("expected {}", kinds.join(" or ")));
        }
    }
    match value {
        Value::Object(object) => {
            for name in schema
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let name = name.as_str().unwrap_or_default();
                if !object.contains_key(name) {
                    return fail(format!("missing required property {name:?}"));
                }
            }
            let properties = schema.get("properties").and_then(Value::as_object);
            let closed = schema.get("additionalProperties") == Some(&Value::Bool(false));
            for (name, item) in object {
                match properties.and_then(|p| p.get(name)) {
                    Some(property) => check(property, item, &format!("{path}.{name}"))?,
                    None if closed => return fail(format!("unexpected property {name:?}")),
                    None => {}
                }
            }
        }
        Value::Array(items) => {
            let count = items.len() as u64;
            if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
                && count < min
            {
                return fail(format!("expected at least {min} items, found {count}"));
            }
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && count > max
            {
                return fail(format!("expected at most {max} items, found {count}"));
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    check(item_schema, item, &format!("{path}[{i}]"))?;
                }
            }
        }
        Value::String(s) => {
            let length = s.chars().count() as u64;
            if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
                && length < min
            {
                return fail(format!("expected at least {min} characters"));
            }
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && length > max
            {
                return fail(format!("expected at most {max} characters"));
            }
        }
        Value::Number(n) => {
            let n = n.as_f64().unwrap_or(f64::NAN);
            if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
                && n < min
            {
                return fail(format!("{n} is below the minimum {min}"));
            }
            if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
                && n > max
            {
                return fail(format!("{n} is above the maximum {max}"));
            }
        }
        _ => {}
    }
    Ok(())
}

fn is_type(value: &Value, kind: &str) -> bool {
    match kind {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "integer" => value.is_i64() || value.is_u64(),
        "number" => value.is_number(),
        "boolean" => value.is_boolean(),
        "null" => value.is_null(),
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::validate;
    use serde_json::json;

    #[test]
    fn checks_the_keywords_cbtsim_uses() {
        let schema = json!({
            "type": "object",
            "required": ["items", "score"],
            "additionalProperties": false,
            "properties": {
                "items": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                "score": {"type": "integer", "minimum": 0, "maximum": 6},
                "kind": {"enum": ["a", "b"]}
            }
        });
        assert_eq!(
            validate(&schema, &json!({"items": ["x"], "score": 3})),
            Ok(())
        );
        let bad = [
            (
                json!({"items": ["x"]}),
                "missing required property \"score\"",
            ),
            (
                json!({"items": [], "score": 1}),
                "$.items: expected at least 1 items",
            ),
            (
                json!({"items": [""], "score": 1}),
                "$.items[0]: expected at least 1 characters",
            ),
            (
                json!({"items": ["x"], "score": 7}),
                "$.score: 7 is above the maximum 6",
            ),
            (
                json!({"items": ["x"], "score": 1.5}),
                "$.score: expected integer",
            ),
            (
                json!({"items": ["x"], "score": 1, "kind": "c"}),
                "$.kind: \"c\" is not one of",
            ),
            (
                json!({"items": ["x"], "score": 1, "extra": 1}),
                "unexpected property",
            ),
            (json!([1]), "$: expected object"),
        ];
        for (value, message) in bad {
            let error = validate(&schema, &value).unwrap_err();
            assert!(error.contains(message), "{value}: {error}");
        }
    }
}
