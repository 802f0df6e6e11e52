//! Reading the server's HTML without a browser: the start tags of one kind
//! and their attributes, enough to check the markup contract of a page
//! fetched as plain HTTP.

use std::collections::BTreeMap;

/// The attributes of every `<NAME ...>` start tag in `html`, in order.
pub(crate) fn start_tags(html: &str, name: &str) -> Vec<BTreeMap<String, String>> {
    let open = format!("<{name}");
    let mut tags = Vec::new();
    let mut rest = html;
    while let Some(at) = rest.find(&open) {
        let tag = &rest[at + open.len()..];
        let end = tag.find('>').unwrap_or(tag.len());
        // `<trx` is not `<tr`.
        if tag.starts_with(|c: char| c.is_ascii_whitespace() || c == '>') {
            tags.push(attributes(&tag[..end]));
        }
        rest = &tag[end..];
    }
    tags
}

/// `name="value"` pairs of a tag's text (the server always double-quotes),
/// with the character references an HTML escaper writes undone.
fn attributes(tag: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = tag;
    while let Some(eq) = rest.find("=\"") {
        let name = rest[..eq]
            .rsplit(|c: char| c.is_ascii_whitespace())
            .next()
            .unwrap_or_default();
        let value = &rest[eq + 2..];
        let Some(close) = value.find('"') else { break };
        out.insert(name.to_owned(), unescape(&value[..close]));
        rest = &value[close + 1..];
    }
    out
}

fn unescape(s: &str) -> String {
    [
        ("&quot;", "\""),
        ("&#34;", "\""),
        ("&#39;", "'"),
        ("&#x27;", "'"),
        ("&lt;", "<"),
        ("&gt;", ">"),
        ("&amp;", "&"),
        ("&#38;", "&"),
    ]
    .iter()
    .fold(s.to_owned(), |s, (from, to)| s.replace(from, to))
}

#[test]
fn start_tags_reads_attributes_of_one_tag_name_only() {
    let html = r#"<table id="nodes"><tr><th>x</th></tr>
        <tr class="node" data-node="a&amp;b" data-state="failed"><td>a</td></tr>
        <track kind="x"><tr
          class="node" data-node="b" data-state="ok">"#;
    let rows = start_tags(html, "tr");
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert!(rows[0].is_empty());
    assert_eq!(rows[1]["data-node"], "a&b");
    assert_eq!(rows[1]["data-state"], "failed");
    assert_eq!(rows[2]["class"], "node");
    assert_eq!(rows[2]["data-node"], "b");
    assert_eq!(rows[2]["data-state"], "ok");
}
