//! Cutting a YAML file into documents and finding the line of a field in one.
//!
//! A file is cut at `---` (and `...`) lines, so that a document that does not parse is
//! rejected alone while the others load. Each document keeps the line numbers of the file:
//! its text is prefixed with as many empty lines as precede it.

use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser};

/// One YAML document of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawDocument {
    /// Line of the file where the document's content starts (1-based).
    pub start_line: usize,
    /// The document, padded with empty lines so that its line numbers are the file's.
    pub text: String,
}

impl RawDocument {
    /// The first line with content (not blank, not a comment): where the object is said to
    /// be. The document's first line when there is none.
    pub fn content_line(&self) -> usize {
        self.text
            .lines()
            .enumerate()
            .skip(self.start_line.saturating_sub(1))
            .find(|(_, l)| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#')
            })
            .map_or(self.start_line, |(i, _)| i + 1)
    }

    /// Does the document hold nothing but blank lines and comments?
    pub fn is_empty(&self) -> bool {
        self.text.lines().all(|l| {
            let t = l.trim();
            t.is_empty() || t.starts_with('#')
        })
    }
}

/// Is `line` a document marker (`---` or `...`, alone or followed by a space)? Returns the
/// rest of the line after a `---` marker.
fn marker(line: &str) -> Option<&str> {
    for m in ["---", "..."] {
        if let Some(rest) = line.strip_prefix(m)
            && (rest.is_empty() || rest.starts_with([' ', '\t', '\r']))
        {
            return Some(if m == "---" { rest } else { "" });
        }
    }
    None
}

/// Cuts a file into documents. Blank documents are kept (callers skip them) so that the
/// count follows the file.
pub fn split_documents(text: &str) -> Vec<RawDocument> {
    let mut docs = Vec::new();
    let mut current: Option<RawDocument> = None;
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let rest = match marker(line) {
            Some(rest) => rest,
            None => {
                let doc = current.get_or_insert_with(|| RawDocument {
                    start_line: line_no,
                    text: "\n".repeat(line_no - 1),
                });
                doc.text.push_str(line);
                doc.text.push('\n');
                continue;
            }
        };
        docs.extend(current.take());
        // Content after `--- ` stays on its line, shifted right so columns still match.
        let mut doc = RawDocument {
            start_line: line_no,
            text: "\n".repeat(line_no - 1),
        };
        if !rest.trim().is_empty() {
            doc.text.push_str("   ");
            doc.text.push_str(rest);
        }
        doc.text.push('\n');
        current = Some(doc);
    }
    docs.extend(current);
    docs
}

/// The line of every node of a document, by path (`spec.ports[0].number`). Mapping values
/// are found at the line of their key.
#[derive(Debug, Default)]
pub struct PathIndex {
    lines: HashMap<String, usize>,
    start_line: usize,
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, next: usize },
}

impl PathIndex {
    /// Indexes a document. A document with a syntax error is indexed up to the error.
    pub fn build(doc: &RawDocument) -> PathIndex {
        let mut index = PathIndex {
            lines: HashMap::new(),
            start_line: doc.start_line,
        };
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(&doc.text);
        while let Some(Ok((event, span))) = parser.next_event() {
            let line = span.start.line();
            match event {
                Event::Scalar(value, ..) => {
                    if let Some(path) = index.node(&mut stack, line, Some(&value)) {
                        index.lines.entry(path).or_insert(line);
                    }
                }
                Event::Alias(_) => {
                    if let Some(path) = index.node(&mut stack, line, None) {
                        index.lines.entry(path).or_insert(line);
                    }
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = index.node(&mut stack, line, None).unwrap_or_default();
                    index.lines.entry(path.clone()).or_insert(line);
                    stack.push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map { path, key: None }
                    } else {
                        Frame::Seq { path, next: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        index
    }

    /// Accounts for one node. Returns the path of a value node, `None` for a mapping key
    /// (whose line is recorded as the line of the value to come).
    fn node(&mut self, stack: &mut [Frame], line: usize, scalar: Option<&str>) -> Option<String> {
        match stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Seq { path, next }) => {
                let p = format!("{path}[{next}]");
                *next += 1;
                Some(p)
            }
            Some(Frame::Map { path, key }) => match key.take() {
                Some(k) => Some(k),
                None => {
                    let name = scalar.unwrap_or("?");
                    let p = if path.is_empty() {
                        name.to_owned()
                    } else {
                        format!("{path}.{name}")
                    };
                    self.lines.entry(p.clone()).or_insert(line);
                    *key = Some(p);
                    None
                }
            },
        }
    }

    /// The line of `path`, or of its closest indexed ancestor, or of the document start.
    pub fn line_of(&self, path: &str) -> usize {
        let mut p = path;
        loop {
            if let Some(line) = self.lines.get(p) {
                return *line;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => return self.lines.get("").copied().unwrap_or(self.start_line),
            }
        }
    }
}
