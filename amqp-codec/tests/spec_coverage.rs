//! Checks the codec against the spec: every class id, method id, field name and field domain
//! in RabbitMQ's extended AMQP 0-9-1 XML (copied into testdata/) agrees with what the codec
//! implements, and the codec adds only RabbitMQ's later extensions.
#![allow(clippy::unwrap_used)] // A test (or example) that fails says where, which is what unwrap does.

use amqp_codec::method::SPEC;
use amqp_codec::properties::PROPERTY_SPEC;
use std::collections::HashMap;

const XML: &str = include_str!("../testdata/amqp0-9-1.stripped.extended.xml");

/// Methods RabbitMQ added after the extended XML was written.
const LATER_EXTENSIONS: [&str; 4] =
    ["connection.blocked", "connection.unblocked", "connection.update-secret", "connection.update-secret-ok"];

struct SpecMethod {
    class_id: u16,
    method_id: u16,
    fields: Vec<(String, String)>,
}

fn parse_spec() -> (HashMap<String, SpecMethod>, Vec<(String, String)>) {
    let doc = roxmltree::Document::parse(XML).expect("the spec XML parses");
    let root = doc.root_element();
    let domains: HashMap<&str, &str> = root
        .children()
        .filter(|n| n.has_tag_name("domain"))
        .map(|d| (d.attribute("name").unwrap(), d.attribute("type").unwrap()))
        .collect();
    let field_domain = |f: roxmltree::Node| {
        let name = f.attribute("domain").or(f.attribute("type")).unwrap();
        let resolved = domains.get(name).copied().unwrap_or(name);
        (f.attribute("name").unwrap().to_owned(), resolved.to_owned())
    };
    let mut methods = HashMap::new();
    let mut properties = Vec::new();
    for class in root.children().filter(|n| n.has_tag_name("class")) {
        let class_name = class.attribute("name").unwrap();
        let class_id: u16 = class.attribute("index").unwrap().parse().unwrap();
        if class_name == "basic" {
            properties = class.children().filter(|n| n.has_tag_name("field")).map(field_domain).collect();
        }
        for method in class.children().filter(|n| n.has_tag_name("method")) {
            let fields = method.children().filter(|n| n.has_tag_name("field")).map(field_domain).collect();
            let method_id = method.attribute("index").unwrap().parse().unwrap();
            let name = format!("{class_name}.{}", method.attribute("name").unwrap());
            methods.insert(name, SpecMethod { class_id, method_id, fields });
        }
    }
    (methods, properties)
}

#[test]
fn every_method_of_the_spec_is_implemented_with_the_same_ids_and_fields() {
    let (spec, _) = parse_spec();
    assert_eq!(spec.len(), 60, "the extended spec has 60 methods");
    for (name, expected) in &spec {
        let ours = SPEC.iter().find(|m| m.name == name).unwrap_or_else(|| panic!("{name} is missing"));
        assert_eq!((ours.class_id.0, ours.method_id.0), (expected.class_id, expected.method_id), "{name} ids");
        let fields: Vec<(String, String)> =
            ours.fields.iter().map(|(n, d)| (n.replace('_', "-"), d.spec_name().to_owned())).collect();
        assert_eq!(fields, expected.fields, "{name} fields");
    }
}

#[test]
fn the_codec_adds_only_rabbitmqs_later_extensions() {
    let (spec, _) = parse_spec();
    let extra: Vec<&str> = SPEC.iter().map(|m| m.name).filter(|n| !spec.contains_key(*n)).collect();
    assert_eq!(extra, LATER_EXTENSIONS);
    assert_eq!(SPEC.len(), 64);
    let mut ids: Vec<_> = SPEC.iter().map(|m| (m.class_id, m.method_id)).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), SPEC.len(), "no two methods share an id");
}

#[test]
fn basic_properties_follow_the_spec_in_flag_order() {
    let (_, properties) = parse_spec();
    let ours: Vec<(String, String)> =
        PROPERTY_SPEC.iter().map(|(n, d)| (n.to_string(), d.spec_name().to_owned())).collect();
    assert_eq!(ours, properties);
}
