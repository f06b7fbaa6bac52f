//! Where each field of a YAML document is: a map from field paths as the errors print them
//! (`spec.kprobes[0].args[1].type`) to line and column, built from the parser's marked events.
//! serde reports *what* is wrong with a typed value; this says *where* it is in the file.
//!
//! Paths are kept as hashes, built up the way the path text is (a mapping key appends `.key`, a
//! sequence item `[n]`), so the index costs a few words per node however long the keys are or
//! however deep they nest: a key of a megabyte repeated in the path of every node under it
//! would otherwise cost a megabyte per node. Events are read one at a time rather than through
//! yaml-rust2's loader, which recurses once per nesting level.

use std::{
    collections::{hash_map::DefaultHasher, HashMap},
    hash::Hasher,
};

use yaml_rust2::{
    parser::{Event, Parser},
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
    keys: HashMap<u64, Position>,
    /// Path to the position of its value.
    values: HashMap<u64, Position>,
}

/// A path being built: the hash of its text so far, and whether that text is empty (the
/// document's root, whose keys get no leading `.`).
#[derive(Clone)]
struct PathHash {
    state: DefaultHasher,
    empty: bool,
}

impl PathHash {
    fn root() -> PathHash {
        PathHash {
            state: DefaultHasher::new(),
            empty: true,
        }
    }

    fn of(path: &str) -> u64 {
        let mut h = DefaultHasher::new();
        h.write(path.as_bytes());
        h.finish()
    }

    /// `self` followed by `.key` (or `key` at the root).
    fn field(&self, key: &str) -> PathHash {
        let mut next = self.clone();
        if !self.empty {
            next.state.write(b".");
        }
        next.state.write(key.as_bytes());
        next.empty = false;
        next
    }

    /// `self` followed by `[index]`.
    fn item(&self, index: usize) -> PathHash {
        let mut next = self.clone();
        next.state.write(format!("[{index}]").as_bytes());
        next.empty = false;
        next
    }

    fn finish(&self) -> u64 {
        self.state.finish()
    }
}

impl Locations {
    /// Indexes `text`; a document that does not parse yields the index of what came before the
    /// error (serde reports it).
    pub fn index(text: &str) -> Locations {
        let mut b = Builder {
            stack: Vec::new(),
            locations: Locations::default(),
        };
        let mut parser = Parser::new_from_str(text);
        while let Ok((ev, mark)) = parser.next_token() {
            if ev == Event::StreamEnd {
                break;
            }
            b.on_event(ev, mark);
        }
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

    fn find(&self, path: &str, map: &HashMap<u64, Position>) -> Option<Position> {
        let mut p = path;
        loop {
            if let Some(pos) = map.get(&PathHash::of(p)) {
                return Some(*pos);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }
}

enum Frame {
    /// A mapping, and the path of the value whose key was just read.
    Map {
        path: PathHash,
        key: Option<PathHash>,
    },
    Seq {
        path: PathHash,
        next: usize,
    },
}

struct Builder {
    stack: Vec<Frame>,
    locations: Locations,
}

impl Builder {
    /// The path of the node that starts now, or `None` when it is a mapping key.
    fn node_path(&mut self, mark: Marker, scalar: Option<&str>) -> Option<PathHash> {
        match self.stack.last_mut() {
            None => Some(PathHash::root()),
            Some(Frame::Seq { path, next }) => {
                let p = path.item(*next);
                *next += 1;
                self.locations.keys.insert(p.finish(), mark.into());
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(k),
                None => {
                    let full = path.field(scalar.unwrap_or("?"));
                    self.locations.keys.insert(full.finish(), mark.into());
                    *key = Some(full);
                    None
                }
            },
        }
    }

    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(ref s, ..) => {
                if let Some(p) = self.node_path(mark, Some(s)) {
                    self.locations.values.insert(p.finish(), mark.into());
                }
            }
            Event::Alias(_) => {
                if let Some(p) = self.node_path(mark, None) {
                    self.locations.values.insert(p.finish(), mark.into());
                }
            }
            Event::MappingStart(..) => {
                let path = self.node_path(mark, None).unwrap_or_else(PathHash::root);
                self.locations.values.insert(path.finish(), mark.into());
                self.stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = self.node_path(mark, None).unwrap_or_else(PathHash::root);
                self.locations.values.insert(path.finish(), mark.into());
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
