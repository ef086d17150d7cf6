//! A plain text table: left-aligned columns sized to their widest cell, measured without
//! colour codes so that coloured and plain output line up the same.

use std::borrow::Cow;

/// Rows of cells under a header; cells may borrow (a 100,000-row listing copies nothing).
#[derive(Debug, Default)]
pub struct Table<'a> {
    header: Vec<Cow<'a, str>>,
    rows: Vec<Vec<Cow<'a, str>>>,
}

impl<'a> Table<'a> {
    /// A table with these column titles.
    pub fn new(header: &[&'a str]) -> Self {
        Self { header: header.iter().map(|s| Cow::Borrowed(*s)).collect(), rows: Vec::new() }
    }

    /// Adds a row.
    pub fn row<C: Into<Cow<'a, str>>>(&mut self, cells: Vec<C>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// Renders, one line per row, no trailing spaces.
    pub fn render(&self) -> String {
        let n = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| visible_len(h)).collect();
        for r in &self.rows {
            for (i, c) in r.iter().enumerate().take(n) {
                widths[i] = widths[i].max(visible_len(c));
            }
        }
        let line_width: usize = widths.iter().sum::<usize>() + 2 * n + 1;
        let mut out = String::with_capacity(line_width * (self.rows.len() + 1));
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let start = out.len();
            for (i, c) in r.iter().enumerate().take(n) {
                out.push_str(c);
                if i + 1 < n {
                    out.extend(std::iter::repeat_n(' ', widths[i] - visible_len(c) + 2));
                }
            }
            let trimmed = out[start..].trim_end().len();
            out.truncate(start + trimmed);
            out.push('\n');
        }
        out
    }
}

/// Characters shown, ANSI escape sequences left out (anstream's stripper).
fn visible_len(s: &str) -> usize {
    if s.is_ascii() && !s.contains('\x1b') {
        return s.len();
    }
    anstream::adapter::strip_str(s).map(|part| part.chars().count()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_ignoring_colour() {
        let mut t = Table::new(&["A", "B"]);
        t.row(vec!["\x1b[32mok\x1b[0m", "x"]);
        t.row(vec!["longer", ""]);
        let s = t.render();
        assert_eq!(s, "A       B\n\x1b[32mok\x1b[0m      x\nlonger\n");
    }
}
