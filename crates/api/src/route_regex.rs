//! The one way a route's `RegularExpression` match (path, header, query parameter) is
//! compiled, shared by the translator (which refuses a route whose pattern does not
//! compile) and the proxy (which compiles it into its routing table): a pattern the
//! translator lets through can never fail in the proxy, so it never becomes a NACK.

use regex::{Regex, RegexBuilder};

/// Upper bound on the compiled size of one regex. The regex crate runs in linear time,
/// but a huge pattern (e.g. `\w{500}`) still costs memory for every config.
pub const SIZE_LIMIT: usize = 1 << 20;

/// `pattern` compiled to match a whole value (`^(?:pattern)$`), within [`SIZE_LIMIT`]: a
/// Gateway API regex match is on the whole value, as in Envoy's `safe_regex`, not a
/// search inside it.
///
/// The pattern must be a regex on its own first: `a)|(.*` is none, but wrapped it
/// would close the wrapper's group and match anything.
pub fn whole_match(pattern: &str) -> Result<Regex, regex::Error> {
    regex_syntax::Parser::new()
        .parse(pattern)
        .map_err(|e| regex::Error::Syntax(e.to_string()))?;
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(SIZE_LIMIT)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_values_only() {
        let Ok(re) = whole_match("/items/[0-9]+") else {
            panic!("a plain pattern compiles");
        };
        assert!(re.is_match("/items/42"));
        assert!(!re.is_match("/items/42/more"));
        assert!(!re.is_match("/x/items/42"));
        let Ok(alternatives) = whole_match("a|b") else {
            panic!("alternatives compile");
        };
        assert!(alternatives.is_match("a") && alternatives.is_match("b"));
        assert!(!alternatives.is_match("ab"));
    }

    #[test]
    fn a_pattern_cannot_escape_the_wrapper() {
        // Each is valid once wrapped in `^(?:...)$`, none is a regex on its own.
        for bad in ["a)|(.*", ".*)(?:", ")("] {
            assert!(
                matches!(whole_match(bad), Err(regex::Error::Syntax(_))),
                "{bad:?} was accepted"
            );
        }
    }

    #[test]
    fn patterns_over_the_size_limit_are_refused() {
        // A valid pattern that only its compiled size makes fail.
        let big = r"\w{300}";
        assert!(
            RegexBuilder::new(big)
                .size_limit(SIZE_LIMIT * 100)
                .build()
                .is_ok(),
            "{big} compiles with a larger limit"
        );
        assert!(
            matches!(
                whole_match(big),
                Err(regex::Error::CompiledTooBig(SIZE_LIMIT))
            ),
            "{big} is over {SIZE_LIMIT} bytes compiled"
        );
    }
}
