//! Where each field of a YAML document is: a map from field paths as the errors print them
//! (`spec.kprobes[0].args[1].type`) to line and column, built from the parser's marked events.
//! serde reports *what* is wrong with a typed value; this says *where* it is in the file.

use std::collections::HashMap;

use yaml_rust2::{
    parser::{Event, MarkedEventReceiver, Parser},
    scanner::Marker,
};

/// A position in the source, 1-based.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line.
    pub line: usize,
    /// Column.
    pub column: usize,
}

impl From<Marker> for Position {
    fn from(m: Marker) -> Self {
        Position {
            line: m.line(),
            column: m.col() + 1,
        }
    }
}

/// Field paths to positions.
#[derive(Debug, Default)]
pub struct Locations {
    /// Path to the position of its key (fields of mappings) or of its item (sequence items).
    keys: HashMap<String, Position>,
    /// Path to the position of its value.
    values: HashMap<String, Position>,
}

impl Locations {
    /// Indexes `text`; a document that does not parse yields an empty index (serde reports it).
    pub fn index(text: &str) -> Locations {
        let mut b = Builder::default();
        let _ = Parser::new_from_str(text).load(&mut b, false);
        b.locations
    }

    /// Where `path`'s value is, or the nearest enclosing path that is in the file.
    pub fn value(&self, path: &str) -> Option<Position> {
        self.find(path, &self.values)
    }

    /// Where `path`'s key is (for a field that should not be there), else its value.
    pub fn key(&self, path: &str) -> Option<Position> {
        self.find(path, &self.keys).or_else(|| self.value(path))
    }

    fn find(&self, path: &str, map: &HashMap<String, Position>) -> Option<Position> {
        let mut p = path;
        loop {
            if let Some(pos) = map.get(p) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    locations: Locations,
}

impl Builder {
    /// The path of the node that starts now, or `None` when it is a mapping key.
    fn node_path(&mut self, mark: Marker, scalar: Option<&str>) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                self.locations.keys.insert(p.clone(), mark.into());
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(if path.is_empty() {
                    k
                } else {
                    format!("{path}.{k}")
                }),
                None => {
                    let k = scalar.unwrap_or("?").to_string();
                    let full = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    self.locations.keys.insert(full, mark.into());
                    *key = Some(k);
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for Builder {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(ref s, ..) => {
                if let Some(p) = self.node_path(mark, Some(s)) {
                    self.locations.values.insert(p, mark.into());
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.node_path(mark, None) {
                    self.locations.values.insert(p, mark.into());
                }
            }
            Event::MappingStart(..) => {
                let path = self.node_path(mark, None).unwrap_or_default();
                self.locations.values.insert(path.clone(), mark.into());
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.node_path(mark, None).unwrap_or_default();
                self.locations.values.insert(path.clone(), mark.into());
                self.stack.push(Frame::Seq { path, next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
spec:
  kprobes:
  - call: tcp_connect
    args:
    - index: 0
      type: sock
";

    #[test]
    fn paths_point_at_keys_and_values() {
        let l = Locations::index(DOC);
        assert_eq!(
            l.value("spec.kprobes[0].call"),
            Some(Position {
                line: 3,
                column: 11
            })
        );
        assert_eq!(
            l.key("spec.kprobes[0].args[0].type"),
            Some(Position { line: 6, column: 7 })
        );
        assert_eq!(
            l.value("spec.kprobes[0].args[0].type"),
            Some(Position {
                line: 6,
                column: 13
            })
        );
    }

    #[test]
    fn a_missing_path_falls_back_to_its_parent() {
        let l = Locations::index(DOC);
        assert_eq!(
            l.value("spec.kprobes[0].selectors"),
            l.value("spec.kprobes[0]")
        );
        assert!(l.value("spec.kprobes[0]").is_some());
    }
}
