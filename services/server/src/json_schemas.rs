//! The JSON Schemas of the API types (`schemas/json`, written by `zhiku schemas`), cut
//! out of the OpenAPI document's components.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use utoipa::openapi::{ComponentsBuilder, OpenApi as Spec};

/// The JSON Schema (draft 2020-12) of every API type, by type name: each component schema
/// of the OpenAPI document with the components it refers to under `$defs`. OpenAPI 3.1
/// schemas are JSON Schema 2020-12, so only the references need rewriting.
pub fn json_schemas(openapi: &Spec) -> BTreeMap<String, Value> {
    let components = openapi
        .components
        .clone()
        .unwrap_or_else(|| ComponentsBuilder::new().build());
    let all: BTreeMap<String, Value> = components
        .schemas
        .iter()
        .map(|(name, schema)| {
            let mut schema = serde_json::to_value(schema).unwrap_or(Value::Null);
            rewrite_refs(&mut schema);
            (name.clone(), schema)
        })
        .collect();
    all.iter()
        .map(|(name, schema)| {
            let mut defs = BTreeMap::new();
            collect_defs(schema, &all, &mut defs);
            let mut document = json!({
                "$schema": "https://json-schema.org/draft/2020-12/schema",
                "title": name,
            });
            if let (Value::Object(document), Value::Object(schema)) = (&mut document, schema) {
                document.extend(schema.clone());
                if !defs.is_empty() {
                    document.insert("$defs".into(), json!(defs));
                }
            }
            (name.clone(), document)
        })
        .collect()
}

const COMPONENT_PREFIX: &str = "#/components/schemas/";

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (key, value) in map.iter_mut() {
                match (key.as_str(), value) {
                    ("$ref", Value::String(target)) => {
                        if let Some(name) = target.strip_prefix(COMPONENT_PREFIX) {
                            *target = format!("#/$defs/{name}");
                        }
                    }
                    (_, value) => rewrite_refs(value),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

/// Adds every schema `value` refers to, directly or not, to `defs`.
fn collect_defs(value: &Value, all: &BTreeMap<String, Value>, defs: &mut BTreeMap<String, Value>) {
    for target in refs(value) {
        if let Some(name) = target.strip_prefix("#/$defs/")
            && !defs.contains_key(name)
            && let Some(schema) = all.get(name)
        {
            defs.insert(name.to_string(), schema.clone());
            collect_defs(schema, all, defs);
        }
    }
}

/// Every `$ref` target in `value`.
fn refs(value: &Value) -> Vec<&str> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(key, value)| match (key.as_str(), value) {
                ("$ref", Value::String(target)) => vec![target.as_str()],
                _ => refs(value),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(refs).collect(),
        _ => Vec::new(),
    }
}

/// Writes [`json_schemas`] into `dir` as `<Type>.schema.json`, and removes schema files of
/// types that no longer exist, so the directory is exactly what the code defines.
pub fn write_json_schemas(dir: &std::path::Path, openapi: &Spec) -> anyhow::Result<usize> {
    std::fs::create_dir_all(dir)?;
    let schemas = json_schemas(openapi);
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some(stem) = name.strip_suffix(".schema.json")
            && !schemas.contains_key(stem)
        {
            std::fs::remove_file(&path)?;
        }
    }
    for (name, schema) in &schemas {
        std::fs::write(dir.join(format!("{name}.schema.json")), schema_text(schema))?;
    }
    Ok(schemas.len())
}

/// A schema file's text: pretty JSON with a final newline.
pub fn schema_text(schema: &Value) -> String {
    let mut text = serde_json::to_string_pretty(schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    #[test]
    fn committed_json_schemas_are_generated_ones() {
        // Read at run time, as the e2e harness does: a shared target directory may hold a
        // test binary compiled from another checkout.
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
        let dir = manifest.join("../../schemas/json");
        let generated = json_schemas(&crate::routes::document());
        let mut committed = BTreeSet::new();
        for entry in std::fs::read_dir(&dir).unwrap() {
            let name = entry.unwrap().file_name().into_string().unwrap();
            if let Some(stem) = name.strip_suffix(".schema.json") {
                committed.insert(stem.to_string());
            }
        }
        assert_eq!(
            committed,
            generated.keys().cloned().collect(),
            "schemas/json is stale: run `zhiku schemas`"
        );
        for (name, schema) in &generated {
            let text = std::fs::read_to_string(dir.join(format!("{name}.schema.json"))).unwrap();
            assert_eq!(
                text,
                schema_text(schema),
                "schemas/json/{name}.schema.json is stale: run `zhiku schemas`"
            );
        }
    }

    #[test]
    fn json_schemas_refer_only_to_their_own_defs() {
        for (name, schema) in json_schemas(&crate::routes::document()) {
            for target in refs(&schema) {
                let def = target
                    .strip_prefix("#/$defs/")
                    .unwrap_or_else(|| panic!("{name}: reference {target} is not to its $defs"));
                assert!(
                    schema["$defs"].get(def).is_some(),
                    "{name}: {target} is missing"
                );
            }
        }
    }
}
