//! The XML stream description an AEDAT 4.0 header carries (read with the kept `roxmltree`):
//! one `<node name="ID">` per stream under `outInfo`, with its `typeIdentifier` (`EVTS` for
//! polarity events, `FRME`, `IMUS`, `TRIG`, ...) and, in its `info` node, `sizeX` / `sizeY`.

use roxmltree::{Document, Node};

/// One stream the file declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stream {
    /// The id its packets carry.
    pub id: i32,
    /// The flatbuffer file identifier of its packets (`EVTS` for polarity events).
    pub type_identifier: String,
    /// `sizeX` / `sizeY` of its `info` node, when given.
    pub size: Option<(i64, i64)>,
}

/// The streams of a description, in file order. Errors say what is malformed.
pub fn streams(xml: &str) -> Result<Vec<Stream>, String> {
    let doc =
        Document::parse(xml).map_err(|e| format!("the stream description is not XML: {e}"))?;
    let root = doc.root_element();
    let out_info = root
        .children()
        .find(|n| is_node(n, "outInfo"))
        .ok_or("the stream description has no `outInfo` node")?;
    let mut streams = Vec::new();
    for node in out_info.children().filter(|n| n.has_tag_name("node")) {
        let name = node.attribute("name").unwrap_or_default();
        let id: i32 = name
            .parse()
            .map_err(|_| format!("a stream node is named {name:?}, not a number"))?;
        let Some(type_identifier) = attr(&node, "typeIdentifier") else {
            return Err(format!("stream {id} has no `typeIdentifier`"));
        };
        let size = node
            .children()
            .find(|n| is_node(n, "info"))
            .and_then(|info| {
                let int = |key| attr(&info, key).and_then(|v| v.trim().parse::<i64>().ok());
                Some((int("sizeX")?, int("sizeY")?))
            });
        streams.push(Stream {
            id,
            type_identifier: type_identifier.trim().to_string(),
            size,
        });
    }
    Ok(streams)
}

fn is_node(node: &Node, name: &str) -> bool {
    node.has_tag_name("node") && node.attribute("name") == Some(name)
}

/// The text of `<attr key="KEY">` directly under `node`.
fn attr<'a>(node: &Node<'a, '_>, key: &str) -> Option<&'a str> {
    node.children()
        .find(|n| n.has_tag_name("attr") && n.attribute("key") == Some(key))
        .map(|n| n.text().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_streams_and_sizes() {
        let xml = r#"<dv version="2.0"><node name="outInfo" path="/o/">
            <node name="0" path="/o/0/"><attr key="typeIdentifier" type="string">EVTS</attr>
              <node name="info" path="/o/0/info/"><attr key="sizeX" type="int">346</attr>
              <attr key="sizeY" type="int">260</attr></node></node>
            <node name="2" path="/o/2/"><attr key="typeIdentifier" type="string">IMUS</attr></node>
            </node></dv>"#;
        let s = streams(xml).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(
            (s[0].id, s[0].type_identifier.as_str(), s[0].size),
            (0, "EVTS", Some((346, 260)))
        );
        assert_eq!(
            (s[1].id, s[1].type_identifier.as_str(), s[1].size),
            (2, "IMUS", None)
        );
    }

    #[test]
    fn malformed_descriptions_are_errors() {
        assert!(streams("<dv").is_err());
        assert!(streams("<dv/>").unwrap_err().contains("outInfo"));
        let bad_id = r#"<dv><node name="outInfo"><node name="x"/></node></dv>"#;
        assert!(streams(bad_id).unwrap_err().contains("not a number"));
    }
}
