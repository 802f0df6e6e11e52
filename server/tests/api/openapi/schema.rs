//! The part of JSON Schema (2020-12, as OpenAPI 3.1 uses it) that the
//! document's schemas use, to check real bodies against them.
//!
//! Stricter than JSON Schema on one point, on purpose: an object schema that
//! lists `properties` and says nothing of `additionalProperties` accepts no
//! other key, so a field the server sends but the document does not name is
//! an error. With `exhaustive`, every listed property must also be present
//! (for values built with every field set).

use serde_json::Value;

pub(super) struct Checker<'a> {
    doc: &'a Value,
    exhaustive: bool,
}

impl<'a> Checker<'a> {
    pub(super) fn new(doc: &'a Value) -> Checker<'a> {
        Checker {
            doc,
            exhaustive: false,
        }
    }

    pub(super) fn exhaustive(doc: &'a Value) -> Checker<'a> {
        Checker {
            doc,
            exhaustive: true,
        }
    }

    /// `#/components/schemas/NAME`.
    pub(super) fn named(&self, name: &str) -> &'a Value {
        let schema = &self.doc["components"]["schemas"][name];
        assert!(schema.is_object(), "no schema `{name}` in the document");
        schema
    }

    /// Every way `value` does not match `schema`, as `at: why` lines.
    pub(super) fn check(&self, schema: &Value, value: &Value) -> Result<(), String> {
        let mut errors = Vec::new();
        self.walk(schema, value, "$", &mut errors);
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("\n"))
        }
    }

    /// The target of a local `$ref` (`#/a/b`).
    pub(super) fn resolve(&self, reference: &str) -> Option<&'a Value> {
        self.doc.pointer(reference.strip_prefix('#')?)
    }

    fn walk(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => return errors.push(format!("{at}: nothing is allowed here")),
            Value::Object(_) => self.merged(schema),
            other => return errors.push(format!("{at}: a schema cannot be {other}")),
        };
        if let Some(Value::String(reference)) = schema.get("$ref") {
            match self.resolve(reference) {
                Some(target) => self.walk(target, value, at, errors),
                None => errors.push(format!("{at}: `{reference}` does not resolve")),
            }
            return;
        }
        for (key, exactly_one) in [("oneOf", true), ("anyOf", false)] {
            if let Some(Value::Array(choices)) = schema.get(key) {
                let matching = choices
                    .iter()
                    .filter(|c| {
                        let mut e = Vec::new();
                        self.walk(c, value, at, &mut e);
                        e.is_empty()
                    })
                    .count();
                if matching == 0 || (exactly_one && matching > 1) {
                    errors.push(format!("{at}: {value} matches {matching} of the {key}"));
                }
            }
        }
        if let Some(types) = schema.get("type") {
            let types: Vec<&str> = match types {
                Value::String(t) => vec![t.as_str()],
                Value::Array(ts) => ts.iter().filter_map(Value::as_str).collect(),
                _ => Vec::new(),
            };
            if !types.iter().any(|t| is_type(value, t)) {
                return errors.push(format!("{at}: {value} is not of type {types:?}"));
            }
        }
        if let Some(Value::Array(allowed)) = schema.get("enum")
            && !allowed.contains(value)
        {
            errors.push(format!("{at}: {value} is not one of {allowed:?}"));
        }
        if schema.get("format").and_then(Value::as_str) == Some("date-time")
            && let Some(text) = value.as_str()
            && text.parse::<jiff::Timestamp>().is_err()
        {
            errors.push(format!("{at}: `{text}` is not an RFC 3339 date-time"));
        }
        match value {
            Value::Object(fields) => self.object(&schema, fields, at, errors),
            Value::Array(items) => {
                if let Some(item) = schema.get("items") {
                    for (i, v) in items.iter().enumerate() {
                        self.walk(item, v, &format!("{at}[{i}]"), errors);
                    }
                }
            }
            _ => {}
        }
    }

    fn object(
        &self,
        schema: &Value,
        fields: &serde_json::Map<String, Value>,
        at: &str,
        errors: &mut Vec<String>,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        for name in schema
            .get("required")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
        {
            if !fields.contains_key(name) {
                errors.push(format!("{at}: the required `{name}` is missing"));
            }
        }
        let additional = schema.get("additionalProperties");
        for (key, v) in fields {
            let here = format!("{at}.{key}");
            match (properties.and_then(|p| p.get(key)), additional) {
                (Some(property), _) => self.walk(property, v, &here, errors),
                (None, Some(Value::Bool(true))) => {}
                (None, Some(extra @ Value::Object(_))) => self.walk(extra, v, &here, errors),
                (None, None) if properties.is_none() => {}
                (None, _) => errors.push(format!("{here}: the schema does not name it")),
            }
        }
        if self.exhaustive {
            for name in properties.into_iter().flat_map(|p| p.keys()) {
                if !fields.contains_key(name) {
                    errors.push(format!(
                        "{at}: `{name}` is in the schema but not in the value"
                    ));
                }
            }
        }
    }

    /// `schema` with its `allOf` parts merged in (properties and required
    /// lists add up), so that the strict key check sees every part's keys.
    fn merged(&self, schema: &Value) -> Value {
        let Some(Value::Array(parts)) = schema.get("allOf") else {
            return schema.clone();
        };
        let mut merged = schema.clone();
        let out = merged.as_object_mut().expect("schemas here are objects");
        out.remove("allOf");
        for part in parts {
            let mut part = self.merged(part);
            while let Some(target) = part
                .get("$ref")
                .and_then(Value::as_str)
                .and_then(|r| self.resolve(r))
            {
                part = self.merged(target);
            }
            for (key, v) in part.as_object().into_iter().flatten() {
                match (key.as_str(), out.get_mut(key)) {
                    ("properties", Some(Value::Object(mine))) => {
                        mine.extend(v.as_object().cloned().unwrap_or_default());
                    }
                    ("required", Some(Value::Array(mine))) => {
                        mine.extend(v.as_array().cloned().unwrap_or_default());
                    }
                    ("description" | "title", _) => {}
                    (_, _) => {
                        out.insert(key.clone(), v.clone());
                    }
                }
            }
        }
        merged
    }
}

fn is_type(value: &Value, ty: &str) -> bool {
    match ty {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => value.is_i64() || value.is_u64(),
        _ => false,
    }
}

/// Every `$ref` string in `value`, with where it is.
pub(super) fn refs(value: &Value, at: &str, out: &mut Vec<(String, String)>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(r)) => out.push((at.to_owned(), r.clone())),
                    _ => refs(v, &format!("{at}/{key}"), out),
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                refs(v, &format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn the_checker_refuses_what_it_should() {
    let doc = serde_json::json!({"components": {"schemas": {
        "Thing": {"type": "object", "required": ["a"], "properties": {
            "a": {"type": "integer"},
            "b": {"type": ["string", "null"], "format": "date-time"},
            "c": {"type": "string", "enum": ["x", "y"]},
            "d": {"type": "array", "items": {"$ref": "#/components/schemas/Thing"}},
            "free": {"type": "object"}
        }},
        "Both": {"allOf": [{"$ref": "#/components/schemas/Thing"},
                           {"type": "object", "required": ["e"], "properties": {"e": {"type": "boolean"}}}]}
    }}});
    let check = Checker::new(&doc);
    let thing = check.named("Thing");
    let good =
        serde_json::json!({"a": 1, "b": null, "c": "x", "d": [{"a": 2}], "free": {"any": 1}});
    check.check(thing, &good).unwrap();
    for (bad, why) in [
        (
            serde_json::json!({"b": null}),
            "the required `a` is missing",
        ),
        (serde_json::json!({"a": 1.5}), "is not of type"),
        (serde_json::json!({"a": 1, "c": "z"}), "is not one of"),
        (
            serde_json::json!({"a": 1, "b": "yesterday"}),
            "not an RFC 3339",
        ),
        (serde_json::json!({"a": 1, "d": [{"a": "1"}]}), "$.d[0].a"),
        (
            serde_json::json!({"a": 1, "zz": 1}),
            "$.zz: the schema does not name it",
        ),
    ] {
        let err = check.check(thing, &bad).unwrap_err();
        assert!(err.contains(why), "{bad}: {err}");
    }
    let both = check.named("Both");
    check
        .check(both, &serde_json::json!({"a": 1, "e": true}))
        .unwrap();
    let err = check.check(both, &serde_json::json!({"a": 1})).unwrap_err();
    assert!(err.contains("`e` is missing"), "{err}");
    let err = Checker::exhaustive(&doc)
        .check(thing, &serde_json::json!({"a": 1}))
        .unwrap_err();
    assert!(
        err.contains("`free` is in the schema but not in the value"),
        "{err}"
    );
}
