//! A file as a list of YAML documents, each with the line it starts on.
//!
//! The file is first parsed as a whole, so that a syntax error anywhere rejects the whole
//! file with the parser's own (absolute) position. It is then cut at its document markers
//! (`---` at column 0 starts a document, `...` at column 0 ends one: YAML forbids both
//! inside content, so this cut agrees with the parser) and each document is decoded on its
//! own, which lets errors inside it carry the parser's position shifted by the document's
//! first line.

use serde::Deserialize;
use serde_yaml_ng::Value;

/// One document of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Document<'a> {
    /// The document's text, from its `---` line (if any) to the next marker.
    pub(crate) text: &'a str,
    /// Lines of the file before `text`: add it to a line the parser reports in `text`.
    pub(crate) line_offset: usize,
    /// The 1-based line of the document's first content (its `apiVersion:` usually).
    pub(crate) start_line: usize,
}

/// A syntax error, at an absolute 1-based line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SyntaxError {
    pub(crate) line: usize,
    pub(crate) message: String,
}

/// Parses the whole file; the first syntax error rejects it.
pub(crate) fn check_syntax(text: &str) -> Result<(), SyntaxError> {
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        if let Err(e) = Value::deserialize(document) {
            return Err(SyntaxError {
                line: e.location().map_or(1, |l| l.line()),
                message: message_without_location(&e),
            });
        }
    }
    Ok(())
}

/// The documents of `text` that have content (comments and blank documents are dropped).
pub(crate) fn split(text: &str) -> Vec<Document<'_>> {
    let mut documents = Vec::new();
    let mut current = Chunk::new(0, 0);
    let mut offset = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let trimmed = line.trim_end_matches(['\n', '\r']);
        if let Some(rest) = marker_rest(trimmed, "---") {
            current.finish(text, offset, &mut documents);
            current = Chunk::new(offset, index);
            if has_content(rest) {
                current.start_line.get_or_insert(index + 1);
            }
        } else if marker_rest(trimmed, "...").is_some() {
            current.finish(text, offset, &mut documents);
            current = Chunk::new(offset + line.len(), index + 1);
        } else if has_content(trimmed) && !trimmed.starts_with('%') {
            current.start_line.get_or_insert(index + 1);
        }
        offset += line.len();
    }
    current.finish(text, offset, &mut documents);
    documents
}

/// A document being cut: where it starts, and its first content line once seen.
struct Chunk {
    start: usize,
    line_offset: usize,
    start_line: Option<usize>,
}

impl Chunk {
    fn new(start: usize, line_offset: usize) -> Self {
        Self {
            start,
            line_offset,
            start_line: None,
        }
    }

    fn finish<'a>(&self, text: &'a str, end: usize, out: &mut Vec<Document<'a>>) {
        if let (Some(start_line), Some(slice)) = (self.start_line, text.get(self.start..end)) {
            out.push(Document {
                text: slice,
                line_offset: self.line_offset,
                start_line,
            });
        }
    }
}

/// When `line` is the document marker `marker` (alone, or followed by a space or tab),
/// what follows the marker.
fn marker_rest<'a>(line: &'a str, marker: &str) -> Option<&'a str> {
    let rest = line.strip_prefix(marker)?;
    (rest.is_empty() || rest.starts_with([' ', '\t'])).then_some(rest)
}

/// Whether a line holds anything but blanks and a comment.
fn has_content(line: &str) -> bool {
    let line = line.trim_start();
    !line.is_empty() && !line.starts_with('#')
}

/// The error's message without the ` at line L column C` that serde_yaml_ng appends: the
/// caller puts the line first, shifted to the file when the error comes from a document.
pub(crate) fn message_without_location(e: &serde_yaml_ng::Error) -> String {
    let message = e.to_string();
    match e.location() {
        Some(l) => message.replacen(
            &format!(" at line {} column {}", l.line(), l.column()),
            "",
            1,
        ),
        None => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn starts(text: &str) -> Vec<usize> {
        split(text).iter().map(|d| d.start_line).collect()
    }

    #[test]
    fn documents_start_at_their_first_content_line() {
        let text = "# leading comment\n\
                    a: 1\n\
                    ---\n\
                    # comment\n\
                    \n\
                    b: 2\n\
                    ---\n\
                    ---\n\
                    # only a comment\n\
                    --- {c: 3}\n";
        let docs = split(text);
        assert_eq!(starts(text), [2, 6, 10]);
        assert_eq!(docs[0].text, "# leading comment\na: 1\n");
        assert_eq!(docs[0].line_offset, 0);
        assert_eq!(docs[1].text, "---\n# comment\n\nb: 2\n");
        assert_eq!(docs[1].line_offset, 2);
        assert_eq!(docs[2].text, "--- {c: 3}\n");
        assert_eq!(docs[2].line_offset, 9);
    }

    #[test]
    fn document_end_markers_and_crlf() {
        assert_eq!(starts("a: 1\r\n...\r\nb: 2\r\n"), [1, 3]);
        assert_eq!(starts("a: 1\n--- \nb: 2\n---x: 3\n"), [1, 3]);
        assert!(split("").is_empty());
        assert!(split("# nothing\n---\n").is_empty());
    }

    #[test]
    fn each_document_parses_alone() {
        let text = "a: 1\n---\nb: [1, 2]\n---\nc: {d: e}\n";
        assert!(check_syntax(text).is_ok());
        for doc in split(text) {
            let v: Result<Value, _> = serde_yaml_ng::from_str(doc.text);
            assert!(v.is_ok(), "{doc:?}");
        }
    }

    #[test]
    fn syntax_errors_carry_the_absolute_line() {
        let text = "a: 1\n---\nb: 2\n---\nc: [1, 2\nd: 3\n";
        // The parser notices the unclosed `[` of line 5 on line 6; its own position is
        // moved to the front, the context keeps its (absolute) one.
        assert_eq!(
            check_syntax(text),
            Err(SyntaxError {
                line: 6,
                message: "did not find expected ',' or ']', while parsing a flow sequence \
                          at line 5 column 4"
                    .into(),
            })
        );
        assert!(check_syntax("a: 1\n---\nb: 2\n").is_ok());
        assert!(check_syntax("").is_ok());
    }
}
