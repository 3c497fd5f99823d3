//! A small owned XML element: what Pacemaker's messages are made of (attributes and child
//! elements; whitespace and comments are not significant in them).

use std::fmt::Write as _;

use quick_xml::events::{BytesStart, Event};
use quick_xml::{Reader, XmlVersion};

use super::error::WireError;

/// Nesting deeper than this is refused: real messages are a few levels deep, CIBs a dozen.
const MAX_DEPTH: usize = 256;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Element {
    pub name: String,
    /// In document order; order is kept so echoed elements come back as they were sent.
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
}

impl Element {
    pub fn new(name: impl Into<String>) -> Element {
        Element {
            name: name.into(),
            attrs: Vec::new(),
            children: Vec::new(),
        }
    }

    /// Builder form of [`Element::set_attr`].
    pub fn with_attr(mut self, name: &str, value: impl ToString) -> Element {
        self.set_attr(name, value);
        self
    }

    pub fn with_child(mut self, child: Element) -> Element {
        self.children.push(child);
        self
    }

    /// Sets an attribute, replacing an existing one of the same name in place.
    pub fn set_attr(&mut self, name: &str, value: impl ToString) {
        let value = value.to_string();
        match self.attrs.iter_mut().find(|(k, _)| k == name) {
            Some((_, v)) => *v = value,
            None => self.attrs.push((name.to_string(), value)),
        }
    }

    pub fn remove_attr(&mut self, name: &str) -> Option<String> {
        let i = self.attrs.iter().position(|(k, _)| k == name)?;
        Some(self.attrs.remove(i).1)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Integer attribute; `None` when absent or not a number.
    pub fn attr_i64(&self, name: &str) -> Option<i64> {
        self.attr(name)?.trim().parse().ok()
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn child_mut(&mut self, name: &str) -> Option<&mut Element> {
        self.children.iter_mut().find(|c| c.name == name)
    }

    /// First element named `name` in document order, this element included (like XPath `//name`).
    pub fn descendant(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.descendant(name))
    }

    /// Parses one element (the document's root). Text, comments and declarations are skipped.
    pub fn parse(text: &str) -> Result<Element, WireError> {
        let mut reader = Reader::from_str(text);
        let mut stack: Vec<Element> = Vec::new();
        loop {
            let event = reader
                .read_event()
                .map_err(|e| WireError::Xml(e.to_string()))?;
            match event {
                Event::Start(start) => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(WireError::Xml(format!("nesting deeper than {MAX_DEPTH}")));
                    }
                    stack.push(element_from_start(&start)?);
                }
                Event::Empty(start) => {
                    let el = element_from_start(&start)?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => return finish(&mut reader, el),
                    }
                }
                Event::End(_) => {
                    let el = stack
                        .pop()
                        .ok_or_else(|| WireError::Xml("unbalanced end tag".into()))?;
                    match stack.last_mut() {
                        Some(parent) => parent.children.push(el),
                        None => return finish(&mut reader, el),
                    }
                }
                Event::Eof => return Err(WireError::Xml("no complete root element".into())),
                _ => {}
            }
        }
    }

    /// Compact serialization (no declaration, no whitespace), like libxml2's unformatted dump.
    pub fn to_xml(&self) -> String {
        let mut out = String::with_capacity(256);
        self.write_xml(&mut out);
        out
    }

    pub fn write_xml(&self, out: &mut String) {
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            out.push(' ');
            out.push_str(k);
            out.push_str("=\"");
            escape_attr_into(v, out);
            out.push('"');
        }
        if self.children.is_empty() {
            out.push_str("/>");
        } else {
            out.push('>');
            for c in &self.children {
                c.write_xml(out);
            }
            let _ = write!(out, "</{}>", self.name);
        }
    }
}

/// Anything after the root other than whitespace, comments or PIs is an error.
fn finish(reader: &mut Reader<&[u8]>, root: Element) -> Result<Element, WireError> {
    loop {
        match reader
            .read_event()
            .map_err(|e| WireError::Xml(e.to_string()))?
        {
            Event::Eof => return Ok(root),
            Event::Text(t) if t.trim().is_empty() => {}
            Event::Comment(_) | Event::PI(_) => {}
            _ => return Err(WireError::Xml("content after the root element".into())),
        }
    }
}

fn element_from_start(start: &BytesStart<'_>) -> Result<Element, WireError> {
    let name = start.name().into_inner().to_string();
    if !is_xml_name(&name) {
        return Err(WireError::Xml(format!("{name:?} is not an element name")));
    }
    let mut el = Element::new(name);
    for attr in start.attributes() {
        let attr = attr.map_err(|e| WireError::Xml(e.to_string()))?;
        let key = attr.key.into_inner().to_string();
        if !is_xml_name(&key) {
            return Err(WireError::Xml(format!("{key:?} is not an attribute name")));
        }
        let value = attr
            .normalized_value(XmlVersion::Implicit1_0)
            .map_err(|e| WireError::Xml(e.to_string()))?
            .into_owned();
        // libxml2 (Pacemaker) refuses these too; accepting them would relay a value our own
        // writer cannot reproduce (it drops them, see escape_attr_into).
        if let Some(c) = value.chars().find(|&c| !allowed_in_xml(c)) {
            return Err(WireError::Xml(format!(
                "attribute {key} holds U+{:04X}, which XML 1.0 does not allow",
                c as u32
            )));
        }
        el.attrs.push((key, value));
    }
    Ok(el)
}

/// Whether `name` is an XML 1.0 `Name` (what libxml2 accepts as an element or attribute name;
/// characters beyond ASCII are allowed as a whole, as the production mostly does). An empty name
/// (`<\n/>`) would be written back as `</>`, which is no element at all.
fn is_xml_name(name: &str) -> bool {
    let mut chars = name.chars();
    let start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':' || !c.is_ascii();
    chars.next().is_some_and(start)
        && chars.all(|c| start(c) || c.is_ascii_digit() || c == '-' || c == '.')
}

/// Whether XML 1.0 allows `c` in a document (its `Char` production, for the characters a `char`
/// can hold).
fn allowed_in_xml(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r') || ((c as u32) >= 0x20 && c != '\u{FFFE}' && c != '\u{FFFF}')
}

/// Escapes an attribute value. Line breaks and tabs become character references so they survive
/// attribute-value normalization; other control characters cannot appear in XML 1.0 and are dropped.
pub fn escape_attr_into(value: &str, out: &mut String) {
    for ch in value.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c if !allowed_in_xml(c) => {}
            c => out.push(c),
        }
    }
}

/// The longest prefix of `value` whose attribute-escaped form ([`escape_attr_into`]) takes at
/// most `budget` bytes. Escaping can make text five times longer, so a size bound on raw text
/// says little about the message it ends up in.
pub fn prefix_within_escaped(value: &str, budget: usize) -> &str {
    let mut used = 0;
    for (at, ch) in value.char_indices() {
        let cost = match ch {
            '&' | '\n' | '\r' => 5,
            '<' | '>' | '\t' => 4,
            '"' => 6,
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => 0,
            c => c.len_utf8(),
        };
        if used + cost > budget {
            return &value[..at];
        }
        used += cost;
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_within_escaped_counts_what_escaping_writes() {
        let cases: [(&str, usize, &str); 7] = [
            ("plain", 10, "plain"),
            ("plain", 3, "pla"),
            ("a&b", 5, "a"),
            ("a&b", 6, "a&"),
            ("\"x\"", 6, "\""),
            ("é<", 5, "é"),
            ("", 0, ""),
        ];
        for (value, budget, want) in cases {
            let got = prefix_within_escaped(value, budget);
            assert_eq!(got, want, "{value:?} within {budget}");
            let mut escaped = String::new();
            escape_attr_into(got, &mut escaped);
            assert!(
                escaped.len() <= budget,
                "{value:?}: {escaped:?} over {budget}"
            );
        }
        // Every byte the budget allows is used when the next character would not fit.
        let mut full = String::new();
        escape_attr_into("x\ty\nz", &mut full);
        assert_eq!(prefix_within_escaped("x\ty\nz", full.len()), "x\ty\nz");
        assert_eq!(prefix_within_escaped("x\ty\nz", full.len() - 1), "x\ty\n");
    }

    #[test]
    fn parses_nested_message_and_keeps_attribute_order() {
        let text = r#"<lrmd_command t="lrmd" lrmd_op="x"><lrmd_calldata><lrmd_rsc lrmd_rsc_id="d1"><attributes b="2" a="1"/></lrmd_rsc></lrmd_calldata></lrmd_command>"#;
        let el = Element::parse(text).unwrap();
        assert_eq!(el.attr("lrmd_op"), Some("x"));
        let attrs = el.descendant("attributes").unwrap();
        assert_eq!(
            attrs.attrs,
            vec![("b".into(), "2".into()), ("a".into(), "1".into())]
        );
        assert_eq!(el.to_xml(), text);
    }

    #[test]
    fn escaping_round_trips_awkward_values() {
        let nasty = "a<b>&\"c'\nline2\ttab\r\u{1}é";
        let el = Element::new("x").with_attr("v", nasty);
        let xml = el.to_xml();
        assert!(!xml.contains('\n'));
        let back = Element::parse(&xml).unwrap();
        assert_eq!(back.attr("v"), Some("a<b>&\"c'\nline2\ttab\ré"));
    }

    #[test]
    fn skips_whitespace_comments_and_declaration() {
        let el =
            Element::parse("<?xml version=\"1.0\"?>\n<a>\n  <!-- c -->\n  <b/>\n</a>\n").unwrap();
        assert_eq!(el.children.len(), 1);
        assert_eq!(el.children[0].name, "b");
    }

    #[test]
    fn rejects_malformed_documents() {
        for bad in [
            "",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "<a x='1' x='2'/>",
            "<a x=1/>",
            "not xml",
        ] {
            assert!(Element::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert!(Element::parse(&deep).is_err());
    }

    /// Found by the xml_element fuzz target: `<\n />` parsed as an element with an empty name,
    /// which our writer turned into `</>`.
    #[test]
    fn rejects_what_is_not_an_element_or_attribute_name() {
        for bad in ["x\n /><\n />", "<\n/>", "<1a/>", "<a 1b=\"1\"/>"] {
            let e = Element::parse(bad).expect_err(bad);
            assert!(e.to_string().contains("is not an"), "{bad:?}: {e}");
        }
        let ok =
            Element::parse("<lrmd_command t=\"lrmd\" xml:lang=\"en\" a.b-c_d=\"1\"/>").unwrap();
        assert_eq!(Element::parse(&ok.to_xml()).unwrap(), ok);
    }

    /// Found by the xml_element fuzz target: a raw U+0002 and NULs in an attribute parsed, and our
    /// writer (which drops them) wrote a different element back.
    #[test]
    fn rejects_characters_xml_does_not_allow_in_attributes() {
        for bad in [
            "<a id=\"x\u{2}\0\"/>",
            "<a id=\"&#2;\"/>",
            "<a id=\"\u{1b}[31m\"/>",
            "<a id=\"\u{FFFF}\"/>",
        ] {
            let e = Element::parse(bad).expect_err(bad);
            assert!(
                e.to_string().contains("XML 1.0 does not allow"),
                "{bad:?}: {e}"
            );
        }
        let ok = Element::parse("<a v=\"tab&#9;nl&#10;cr&#13;\u{e9}\"/>").expect("allowed");
        assert_eq!(ok.attr("v"), Some("tab\tnl\ncr\r\u{e9}"));
        assert_eq!(Element::parse(&ok.to_xml()).expect("round trip"), ok);
    }

    #[test]
    fn set_attr_replaces_in_place() {
        let mut el = Element::new("x").with_attr("a", 1).with_attr("b", 2);
        el.set_attr("a", 3);
        assert_eq!(el.to_xml(), r#"<x a="3" b="2"/>"#);
        assert_eq!(el.remove_attr("a").as_deref(), Some("3"));
        assert_eq!(el.attr_i64("b"), Some(2));
    }
}
