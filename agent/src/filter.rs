//! Which paths are shipped: the Python tool's include/exclude rule.

use regex::Regex;

use crate::error::{Error, Result};

/// The include/exclude rule, applied to full paths (regexes are searched, not anchored).
#[derive(Debug, Clone)]
pub enum Filter {
    /// Neither -i nor -e: everything whose path does not contain `-tmp`.
    Default,
    /// `-e`: everything that matches none of these.
    Exclude(Vec<Regex>),
    /// `-i`: only what matches one of these.
    Include(Vec<Regex>),
}

impl Filter {
    /// Builds the rule from the raw flag values; an invalid regex or both lists is an error.
    pub fn new(include: &[String], exclude: &[String]) -> Result<Self> {
        if !include.is_empty() && !exclude.is_empty() {
            return Err(Error::InvalidConfig(
                "-i/--include and -e/--exclude: give one or the other, not both".into(),
            ));
        }
        let compile = |flag: &str, list: &[String]| -> Result<Vec<Regex>> {
            list.iter()
                .map(|r| {
                    Regex::new(r).map_err(|e| {
                        let why = e
                            .to_string()
                            .lines()
                            .last()
                            .unwrap_or_default()
                            .trim()
                            .to_string();
                        Error::InvalidConfig(format!(
                            "{flag} {r:?}: invalid regular expression ({why})"
                        ))
                    })
                })
                .collect()
        };
        Ok(if !include.is_empty() {
            Filter::Include(compile("--include", include)?)
        } else if !exclude.is_empty() {
            Filter::Exclude(compile("--exclude", exclude)?)
        } else {
            Filter::Default
        })
    }

    /// Whether the file at `path` is shipped.
    pub fn accepts(&self, path: &str) -> bool {
        match self {
            Filter::Default => !path.contains("-tmp"),
            Filter::Exclude(res) => !res.iter().any(|r| r.is_match(path)),
            Filter::Include(res) => res.iter().any(|r| r.is_match(path)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn default_skips_tmp_anywhere_in_the_path() {
        let f = Filter::new(&[], &[]).unwrap();
        assert!(f.accepts("/d/ks/t/nb-1-big-Data.db"));
        assert!(!f.accepts("/d/ks/t/ks-t-tmp-ka-1-Data.db"));
        assert!(!f.accepts("/d/ks-tmp/t/nb-1-big-Data.db"));
    }

    #[test]
    fn exclude_is_searched_not_anchored() {
        let f = Filter::new(&[], &s(&["Index", r"\.log$"])).unwrap();
        assert!(!f.accepts("/d/nb-1-big-Index.db"));
        assert!(!f.accepts("/d/nb_txn_flush_x.log"));
        assert!(f.accepts("/d/nb-1-big-Data.db"));
        // An explicit exclude replaces the -tmp default.
        assert!(f.accepts("/d/x-tmp-Data.db"));
    }

    #[test]
    fn include_takes_only_matches() {
        let f = Filter::new(&s(&["Data", "TOC"]), &[]).unwrap();
        assert!(f.accepts("/d/nb-1-big-Data.db"));
        assert!(f.accepts("/d/nb-1-big-TOC.txt"));
        assert!(!f.accepts("/d/nb-1-big-Index.db"));
    }

    #[test]
    fn bad_regex_names_the_value() {
        let e = Filter::new(&s(&["(unclosed"]), &[])
            .unwrap_err()
            .to_string();
        assert!(e.contains("--include \"(unclosed\""), "{e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }

    #[test]
    fn include_and_exclude_together_is_an_error() {
        assert!(Filter::new(&s(&["a"]), &s(&["b"])).is_err());
    }
}
