//! The three file shapes, told apart by their top-level keys:
//!
//! 1. one network mapping (`interface:` ... at the top); named after its interface;
//! 2. `networks:` a list of network mappings, each with a `name`;
//! 3. a jumpstarter exporter file, unchanged: every `export.<name>` whose
//!    `type` ends with `DutNetwork` is a network named `<name>`, its `config:`
//!    the mapping; the rest of the file is the exporter's business.
use std::net::SocketAddr;

use serde_yaml::{Mapping, Value};

use super::{
    LoadedConfig, convert,
    error::{ConfigError, Problem, join},
    schema::{self, NETWORK_FIELDS},
    validate,
    wire::NetworkWire,
};

/// Top-level keys of a jumpstarter exporter file (`ExporterConfig`) other
/// than `export`; dutnet ignores them.
const EXPORTER_KEYS: &[&str] = &[
    "apiVersion",
    "kind",
    "metadata",
    "endpoint",
    "token",
    "grpcConfig",
    "tls",
    "description",
];
const DUT_NETWORK_TYPE_SUFFIX: &str = "DutNetwork";

/// One network mapping still to convert: its YAML, its key path, and the
/// name given by the shape (exporter: the export name).
struct Pending {
    value: Value,
    path: String,
    name: Option<String>,
}

pub fn load(text: &str) -> Result<LoadedConfig, ConfigError> {
    check_depth(text)?;
    let mut root = read_yaml(text).map_err(|e| {
        let e = e.to_string();
        let message = if e.starts_with("recursion limit exceeded") {
            format!("not valid YAML: {e}; a config nests at most {MAX_DEPTH} levels deep")
        } else {
            format!("not valid YAML: {e}")
        };
        ConfigError::single("", message)
    })?;
    // YAML merge keys (`<<: *defaults`) let a lab share settings between networks.
    root.apply_merge()
        .map_err(|e| ConfigError::single("", format!("bad YAML merge key (`<<`): {e}")))?;
    let mut problems = Vec::new();
    let mut notes = Vec::new();
    let metrics_listen = take_metrics_listen(&mut root, &mut problems);
    let pending = split(root, &mut problems, &mut notes);

    let mut networks = Vec::new();
    let mut paths = Vec::new();
    let mut subnet_parsed = Vec::new();
    for mut item in pending {
        schema::check_mapping(&mut item.value, NETWORK_FIELDS, &item.path, &mut problems);
        if item.name.is_some() && item.value.get("name").is_some() {
            problems.push(Problem::new(
                join(&item.path, "name"),
                "a network here is named by its export; remove `name`",
            ));
            if let Value::Mapping(m) = &mut item.value {
                m.remove("name");
            }
        }
        let mut wire = match serde_yaml::from_value::<NetworkWire>(item.value) {
            Ok(w) => w,
            Err(e) => {
                // The schema pass should have caught this; report serde's words.
                problems.push(Problem::new(&item.path, e.to_string()));
                continue;
            }
        };
        // An export is named by its key under `export:`, so a bad name is
        // reported there rather than at a `name` inside `config:`.
        let name_path = match &item.name {
            Some(_) => item.path.trim_end_matches(".config").to_owned(),
            None => join(&item.path, "name"),
        };
        if item.name.is_some() {
            wire.name = item.name;
        }
        let mut own = Vec::new();
        let net = convert::build(wire, &mut own);
        for (i, entry) in net.addresses.iter().enumerate() {
            notes.extend(validate::address_notes(
                &join(&item.path, &format!("addresses[{i}]")),
                entry,
            ));
        }
        networks.push(net);
        paths.push(item.path.clone());
        subnet_parsed.push(!own.iter().any(|q| q.path == "subnet"));
        problems.extend(own.into_iter().map(|q| {
            let path = if q.path == "name" {
                name_path.clone()
            } else {
                join(&item.path, &q.path)
            };
            Problem::new(path, q.message)
        }));
    }
    // Faulty networks take part too (with defaults for what did not parse),
    // so one run reports cross-network clashes alongside their own problems.
    problems.extend(validate::check_across(&networks, &paths, &subnet_parsed));
    let (overlaps, warnings) = validate::check_overlaps(&networks, &paths, &subnet_parsed);
    problems.extend(overlaps);
    notes.extend(warnings);
    ConfigError::from_problems(problems).map(|()| LoadedConfig {
        networks,
        notes,
        metrics_listen,
    })
}

/// How deep `[` and `{` may nest. A config needs five levels; the YAML
/// parser takes time quadratic in the depth (100 000 levels took 39 s to
/// refuse), so deeper text is refused before it is parsed.
pub(crate) const MAX_DEPTH: usize = 64;

/// Refuses flow collections nested deeper than [`MAX_DEPTH`], in one pass
/// over the text. Brackets inside quotes and comments do not count; a
/// bracket inside a plain scalar does (it can only make the count high,
/// and no real config comes near the limit).
fn check_depth(text: &str) -> Result<(), ConfigError> {
    let (mut depth, mut quote, mut comment, mut prev) = (0usize, None, false, '\n');
    let mut escaped = false;
    for (line, c) in text.chars().scan(1usize, |line, c| {
        let here = *line;
        if c == '\n' {
            *line += 1;
        }
        Some((here, c))
    }) {
        match (quote, c) {
            (_, '\n') => comment = false,
            _ if comment => {}
            (Some('"'), '\\') if !escaped => {
                escaped = true;
                prev = c;
                continue;
            }
            (Some(q), c) if c == q && !escaped => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '#') if prev.is_whitespace() => comment = true,
            (None, '[' | '{') => {
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(ConfigError::single(
                        "",
                        format!(
                            "not valid YAML: lists or mappings nest more than {MAX_DEPTH} levels deep at line {line}; a config needs a handful, check the brackets"
                        ),
                    ));
                }
            }
            (None, ']' | '}') => depth = depth.saturating_sub(1),
            _ => {}
        }
        escaped = false;
        prev = c;
    }
    Ok(())
}

/// The tag [`read_yaml`] gives an integer beyond the 64-bit range, its
/// digits as a string: the schema pass reports it at its key like any value
/// out of range, where serde_yaml alone fails the whole file.
pub(crate) const HUGE_INTEGER_TAG: &str = "dutnet-integer-out-of-range";

/// Parses YAML into a [`Value`] like `serde_yaml::from_str`, except that an
/// integer too big for 64 bits becomes a [`HUGE_INTEGER_TAG`] value.
fn read_yaml(text: &str) -> Result<Value, serde_yaml::Error> {
    use serde::de::DeserializeSeed;
    ValueSeed.deserialize(serde_yaml::Deserializer::from_str(text))
}

struct ValueSeed;

impl<'de> serde::de::DeserializeSeed<'de> for ValueSeed {
    type Value = Value;
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
}

struct ValueVisitor;

fn huge(digits: String) -> Value {
    Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
        tag: serde_yaml::value::Tag::new(HUGE_INTEGER_TAG),
        value: Value::String(digits),
    }))
}

impl<'de> serde::de::Visitor<'de> for ValueVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }
    fn visit_i64<E>(self, n: i64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_u64<E>(self, n: u64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_i128<E>(self, n: i128) -> Result<Value, E> {
        Ok(i64::try_from(n).map_or_else(|_| huge(n.to_string()), |n| Value::Number(n.into())))
    }
    fn visit_u128<E>(self, n: u128) -> Result<Value, E> {
        Ok(u64::try_from(n).map_or_else(|_| huge(n.to_string()), |n| Value::Number(n.into())))
    }
    fn visit_f64<E>(self, n: f64) -> Result<Value, E> {
        Ok(Value::Number(n.into()))
    }
    fn visit_str<E>(self, s: &str) -> Result<Value, E> {
        Ok(Value::String(s.to_owned()))
    }
    fn visit_string<E>(self, s: String) -> Result<Value, E> {
        Ok(Value::String(s))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(ValueVisitor)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueSeed)? {
            items.push(item);
        }
        Ok(Value::Sequence(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Mapping::new();
        while let Some(key) = map.next_key_seed(ValueSeed)? {
            let value = map.next_value_seed(ValueSeed)?;
            // A repeated key: YAML forbids it, as serde_yaml's own Value does.
            if out.contains_key(&key) {
                return Err(serde::de::Error::custom(format!(
                    "duplicate entry with key {}",
                    schema::describe(&key)
                )));
            }
            out.insert(key, value);
        }
        Ok(Value::Mapping(out))
    }
    fn visit_enum<A: serde::de::EnumAccess<'de>>(self, data: A) -> Result<Value, A::Error> {
        use serde::de::VariantAccess;
        let (tag, contents) = data.variant::<String>()?;
        let value = contents.newtype_variant_seed(ValueSeed)?;
        Ok(Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
            tag: serde_yaml::value::Tag::new(tag),
            value,
        })))
    }
}

/// The top-level `metrics_listen` key, taken out of the file before its
/// shape is read (it sits beside `networks:`, `export:` or a single
/// network's keys alike).
fn take_metrics_listen(root: &mut Value, problems: &mut Vec<Problem>) -> Option<SocketAddr> {
    let value = root.as_mapping_mut()?.remove("metrics_listen")?;
    match value.as_str().map(str::parse::<SocketAddr>) {
        Some(Ok(addr)) => Some(addr),
        _ => {
            problems.push(Problem::new(
                "metrics_listen",
                format!(
                    "expected ADDR:PORT such as \"127.0.0.1:9464\", found {}",
                    schema::describe(&value)
                ),
            ));
            None
        }
    }
}

fn split(root: Value, problems: &mut Vec<Problem>, notes: &mut Vec<String>) -> Vec<Pending> {
    let Value::Mapping(mut top) = root else {
        let found = schema::describe(&root);
        problems.push(Problem::new(
            "",
            format!(
                "expected a mapping at the top of the file, found {found}; see examples/lab.yaml"
            ),
        ));
        return Vec::new();
    };
    let pending = if top.contains_key("networks") {
        networks_list(top, problems)
    } else if top.contains_key("export") {
        exporter(top, problems, notes)
    } else {
        if top.is_empty() {
            problems.push(Problem::new(
                "",
                "the file configures no network; add `interface:` or a `networks:` list",
            ));
            return Vec::new();
        }
        if top.contains_key("name") {
            problems.push(Problem::new(
                "name",
                "a single-network file is named after its interface; use a `networks:` list to name networks",
            ));
            top.remove("name");
        }
        vec![Pending {
            value: Value::Mapping(top),
            path: String::new(),
            name: None,
        }]
    };
    if pending.is_empty() && problems.is_empty() {
        problems.push(Problem::new("", "the file configures no network"));
    }
    pending
}

fn networks_list(top: Mapping, problems: &mut Vec<Problem>) -> Vec<Pending> {
    let mut list = Vec::new();
    for (key, value) in top {
        match key.as_str() {
            Some("networks") => match value {
                Value::Sequence(items) => list = items,
                other => problems.push(Problem::new(
                    "networks",
                    format!(
                        "expected a list of network mappings, found {}",
                        schema::describe(&other)
                    ),
                )),
            },
            Some(k) => problems.push(schema::unknown_key(k, k, ["networks"].into_iter())),
            None => problems.push(Problem::new(
                "",
                format!("top-level key {} is not a string", schema::describe(&key)),
            )),
        }
    }
    list.into_iter()
        .enumerate()
        .map(|(i, value)| {
            let path = format!("networks[{i}]");
            if value.get("name").is_none() {
                problems.push(Problem::new(
                    join(&path, "name"),
                    "is required in a `networks:` list; give e.g. `name: dut1`",
                ));
            }
            Pending {
                value,
                path,
                name: None,
            }
        })
        .collect()
}

/// How deep `children:` of exports are looked into (a Composite's, and a
/// Composite in a Composite...); deeper ones are reported.
const MAX_EXPORT_DEPTH: usize = 8;

/// The DutNetworks among `exports` (at `path`), and among their
/// `children:` (jumpstarter's Composite): each named by its own key.
fn exports_of(
    exports: Mapping,
    path: &str,
    depth: usize,
    pending: &mut Vec<Pending>,
    problems: &mut Vec<Problem>,
    notes: &mut Vec<String>,
) {
    for (name, export) in exports {
        let Some(name) = name.as_str().map(str::to_owned) else {
            problems.push(Problem::new(path, "export names must be strings"));
            continue;
        };
        let here = format!("{path}.{name}");
        let ty = export.get("type").and_then(Value::as_str).unwrap_or("");
        if let Some(children) = export.get("children") {
            match children {
                Value::Mapping(children) if depth < MAX_EXPORT_DEPTH => exports_of(
                    children.clone(),
                    &join(&here, "children"),
                    depth + 1,
                    pending,
                    problems,
                    notes,
                ),
                Value::Mapping(_) => problems.push(Problem::new(
                    join(&here, "children"),
                    format!("exports nest deeper than {MAX_EXPORT_DEPTH} levels; flatten them"),
                )),
                Value::Null => {}
                other => problems.push(Problem::new(
                    join(&here, "children"),
                    format!(
                        "expected a mapping of export names, found {}",
                        schema::describe(other)
                    ),
                )),
            }
        }
        if !ty.ends_with(DUT_NETWORK_TYPE_SUFFIX) {
            let ty = if ty.is_empty() { "none" } else { ty };
            notes.push(format!(
                "export `{name}` (type {ty}) is not a DutNetwork; ignored"
            ));
            continue;
        }
        let config = match export.get("config") {
            Some(c) if !c.is_null() => c.clone(),
            _ => Value::Mapping(Mapping::new()),
        };
        pending.push(Pending {
            value: config,
            path: join(&here, "config"),
            name: Some(name),
        });
    }
}

fn exporter(top: Mapping, problems: &mut Vec<Problem>, notes: &mut Vec<String>) -> Vec<Pending> {
    let mut pending = Vec::new();
    for (key, value) in top {
        match key.as_str() {
            Some("export") => {}
            Some(k) if EXPORTER_KEYS.contains(&k) => continue,
            Some(k) => {
                notes.push(format!(
                    "top-level key `{k}` is not a DutNetwork setting; ignored"
                ));
                continue;
            }
            None => continue,
        }
        let Value::Mapping(exports) = value else {
            problems.push(Problem::new(
                "export",
                format!(
                    "expected a mapping of export names, found {}",
                    schema::describe(&value)
                ),
            ));
            continue;
        };
        exports_of(exports, "export", 0, &mut pending, problems, notes);
    }
    pending
}
