//! Per-table row counts read off a plain-format `pg_dump` stream as it
//! passes, with bounded memory whatever the dump's size.
//!
//! A plain dump is SQL with the data of every table inlined as
//! `COPY schema.table (cols) FROM stdin;`, one line per row, ended by a
//! line `\.` (newlines inside values are escaped as `\n`, so a row is
//! exactly one line; an empty line is a row too — a one-column table
//! holding `''`, or a table without columns). [`CopyRows`] follows the
//! SQL the way `psql` does, just enough to know where a statement starts:
//! quotes (`'…'`, `E'…'`, `"…"`), dollar quotes (`$tag$…$tag$`),
//! comments (`--`, nested `/* */`) and `psql` meta-commands (`\restrict`).
//! So a function body holding a line `COPY t FROM stdin;` is not mistaken
//! for data. Chunks may be split anywhere; the scanner keeps only the
//! start of the current line (at most [`HEAD_LIMIT`] bytes) and counts
//! the newlines of data lines without looking at them.

use super::TableRows;

/// How much of a line's start is kept to recognise a `COPY` statement:
/// `COPY ` and two quoted identifiers of at most 63 bytes each, every
/// byte possibly a doubled quote, fit with room to spare.
pub const HEAD_LIMIT: usize = 1024;

/// The end of a `COPY … FROM stdin;` line as `pg_dump` writes it.
const FROM_STDIN: &[u8] = b" from stdin;";

/// Why the row counts of a dump cannot be trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CopyRowsError {
    #[error(
        "the dump ends inside the data of table {table} (after {rows} rows, before its `\\.` \
         line): it is truncated"
    )]
    Truncated { table: String, rows: u64 },
}

/// Where the scanner is in the dump.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    Sql(Sql),
    Data(Data),
}

/// Lexical state of the SQL between data blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Lex {
    Normal,
    /// `'…'`; `backslash`: an `E'…'` string, where `\'` does not end it.
    Quoted {
        backslash: bool,
        escaped: bool,
    },
    /// `"…"`.
    Identifier,
    /// After a `$` that may open a dollar quote: the tag so far.
    DollarTag(Vec<u8>),
    /// Inside `$tag$…`: the closing delimiter and how much of it matched.
    Dollar {
        delimiter: Vec<u8>,
        matched: usize,
    },
    LineComment,
    BlockComment {
        depth: u32,
    },
    /// A `psql` backslash command, which ends with its line.
    MetaCommand,
}

/// The longest dollar-quote tag followed; longer is not a tag.
const TAG_LIMIT: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Sql {
    lex: Lex,
    /// A statement has begun and not yet ended with `;`.
    in_statement: bool,
    /// The previous two bytes in `Normal` (for `--`, `/*`, `E'`, `$`).
    prev: u8,
    prev2: u8,
    /// The string that just closed was an `E'…'` one (so `''` continues
    /// it as one too).
    closed_backslash: bool,
    /// The current line started a new statement: its start (bounded) and
    /// its last bytes, to recognise `COPY … FROM stdin;`.
    candidate: Option<Candidate>,
    at_line_start: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Candidate {
    head: Vec<u8>,
    /// The last `FROM_STDIN.len()` bytes of the line.
    tail: Vec<u8>,
}

/// Inside a table's data: where the current line is.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Data {
    table: String,
    rows: u64,
    line: DataLine,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataLine {
    Start,
    /// The line so far is `\`.
    Backslash,
    /// The line so far is `\.`.
    Terminator,
    /// Past the start of a row: only its newline matters.
    Row,
}

impl Sql {
    fn new() -> Self {
        Self {
            lex: Lex::Normal,
            in_statement: false,
            prev: b'\n',
            prev2: b'\n',
            closed_backslash: false,
            candidate: None,
            at_line_start: true,
        }
    }
}

/// The scanner: [`feed`](CopyRows::feed) it every chunk of the dump in
/// order, then [`finish`](CopyRows::finish).
#[derive(Debug, Clone)]
pub struct CopyRows {
    mode: Mode,
    tables: TableRows,
}

impl Default for CopyRows {
    fn default() -> Self {
        Self::new()
    }
}

impl CopyRows {
    pub fn new() -> Self {
        Self {
            mode: Mode::Sql(Sql::new()),
            tables: TableRows::new(),
        }
    }

    /// Reads the next chunk of the dump.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            let used = match &mut self.mode {
                Mode::Data(data) => match data.feed(chunk) {
                    DataStep::More(used) => used,
                    DataStep::End(used) => {
                        let table = std::mem::take(&mut data.table);
                        *self.tables.entry(table).or_insert(0) += data.rows;
                        self.mode = Mode::Sql(Sql::new());
                        used
                    }
                },
                Mode::Sql(sql) => {
                    let mut used = 0;
                    let mut entered = None;
                    for &byte in chunk {
                        used += 1;
                        if let Some(table) = sql.feed(byte) {
                            entered = Some(table);
                            break;
                        }
                    }
                    if let Some(table) = entered {
                        self.mode = Mode::Data(Data {
                            table,
                            rows: 0,
                            line: DataLine::Start,
                        });
                    }
                    used
                }
            };
            chunk = &chunk[used..];
        }
    }

    /// The rows of every table whose data the dump held, keyed
    /// `schema.table` (names unquoted), or why they cannot be trusted.
    pub fn finish(self) -> Result<TableRows, CopyRowsError> {
        match self.mode {
            Mode::Data(data) => Err(CopyRowsError::Truncated {
                table: data.table,
                rows: data.rows,
            }),
            Mode::Sql(_) => Ok(self.tables),
        }
    }
}

enum DataStep {
    /// The whole chunk (this many bytes) was data.
    More(usize),
    /// The `\.` line ended after this many bytes.
    End(usize),
}

impl Data {
    fn feed(&mut self, chunk: &[u8]) -> DataStep {
        let mut at = 0;
        while at < chunk.len() {
            if self.line == DataLine::Row {
                match memchr::memchr(b'\n', &chunk[at..]) {
                    Some(newline) => {
                        self.rows += 1;
                        self.line = DataLine::Start;
                        at += newline + 1;
                        continue;
                    }
                    None => return DataStep::More(chunk.len()),
                }
            }
            let byte = chunk[at];
            at += 1;
            self.line = match (self.line, byte) {
                (DataLine::Terminator, b'\n') => return DataStep::End(at),
                (_, b'\n') => {
                    self.rows += 1;
                    DataLine::Start
                }
                (DataLine::Start, b'\\') => DataLine::Backslash,
                (DataLine::Backslash, b'.') => DataLine::Terminator,
                _ => DataLine::Row,
            };
        }
        DataStep::More(chunk.len())
    }
}

fn is_identifier_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'$' || byte >= 0x80
}

impl Sql {
    /// Reads one byte; returns the table when it ends a `COPY … FROM
    /// stdin;` line (its data follows).
    fn feed(&mut self, byte: u8) -> Option<String> {
        if self.at_line_start {
            self.at_line_start = false;
            if self.lex == Lex::Normal && !self.in_statement && byte != b'\n' {
                self.candidate = Some(Candidate {
                    head: Vec::new(),
                    tail: Vec::new(),
                });
            }
        }
        if byte != b'\n'
            && let Some(candidate) = &mut self.candidate
        {
            if candidate.head.len() < HEAD_LIMIT {
                candidate.head.push(byte);
            }
            if candidate.tail.len() == FROM_STDIN.len() {
                candidate.tail.remove(0);
            }
            candidate.tail.push(byte.to_ascii_lowercase());
        }
        self.lex(byte);
        if byte == b'\n' {
            self.at_line_start = true;
            let candidate = self.candidate.take()?;
            if self.lex == Lex::Normal && !self.in_statement {
                return copy_from_stdin(&candidate);
            }
        }
        None
    }

    fn lex(&mut self, byte: u8) {
        match &mut self.lex {
            Lex::Normal => self.normal(byte),
            Lex::Quoted { backslash, escaped } => {
                if *escaped {
                    *escaped = false;
                } else if *backslash && byte == b'\\' {
                    *escaped = true;
                } else if byte == b'\'' {
                    // A doubled quote closes and reopens the same kind.
                    let backslash = *backslash;
                    self.back_to_normal(byte);
                    self.closed_backslash = backslash;
                }
            }
            Lex::Identifier => {
                if byte == b'"' {
                    self.back_to_normal(byte);
                }
            }
            Lex::DollarTag(tag) => {
                if byte == b'$' {
                    let mut delimiter = Vec::with_capacity(tag.len() + 2);
                    delimiter.push(b'$');
                    delimiter.extend_from_slice(tag);
                    delimiter.push(b'$');
                    self.lex = Lex::Dollar {
                        delimiter,
                        matched: 0,
                    };
                } else if is_identifier_byte(byte)
                    && byte != b'$'
                    && !(tag.is_empty() && byte.is_ascii_digit())
                    && tag.len() < TAG_LIMIT
                {
                    tag.push(byte);
                } else {
                    // `$1` or an operator: not a dollar quote after all.
                    self.back_to_normal(b'$');
                    self.normal(byte);
                }
            }
            Lex::Dollar { delimiter, matched } => {
                if byte == delimiter[*matched] {
                    *matched += 1;
                    if *matched == delimiter.len() {
                        self.back_to_normal(b'$');
                    }
                } else {
                    *matched = usize::from(byte == b'$');
                }
            }
            Lex::LineComment | Lex::MetaCommand => {
                if byte == b'\n' {
                    self.lex = Lex::Normal;
                    self.prev = b'\n';
                    self.prev2 = b'\n';
                }
            }
            Lex::BlockComment { depth } => {
                if self.prev == b'*' && byte == b'/' {
                    *depth -= 1;
                    if *depth == 0 {
                        self.lex = Lex::Normal;
                        // `/**/` is whitespace: `*/` must not start anything.
                        self.prev = b' ';
                        self.prev2 = b' ';
                        return;
                    }
                    self.prev = b' ';
                    return;
                } else if self.prev == b'/' && byte == b'*' {
                    *depth += 1;
                    self.prev = b' ';
                    return;
                }
                self.prev = byte;
            }
        }
    }

    fn back_to_normal(&mut self, closing: u8) {
        self.lex = Lex::Normal;
        self.in_statement = true;
        self.prev2 = self.prev;
        self.prev = closing;
    }

    fn normal(&mut self, byte: u8) {
        let (prev, prev2) = (self.prev, self.prev2);
        let continues_backslash_string = prev == b'\'' && self.closed_backslash;
        self.closed_backslash = false;
        self.prev2 = prev;
        self.prev = byte;
        match byte {
            b'-' if prev == b'-' => {
                self.lex = Lex::LineComment;
                return;
            }
            b'*' if prev == b'/' => {
                self.lex = Lex::BlockComment { depth: 1 };
                self.prev = b' ';
                return;
            }
            // Wait for the next byte: `--` and `/*` are not statements.
            b'-' | b'/' => return,
            _ => {}
        }
        // A pending `-` or `/` that did not start a comment was content.
        if matches!(prev, b'-' | b'/') {
            self.in_statement = true;
        }
        match byte {
            b';' => self.in_statement = false,
            b'\\' => self.lex = Lex::MetaCommand,
            b'\'' => {
                let backslash = (matches!(prev, b'E' | b'e') && !is_identifier_byte(prev2))
                    || continues_backslash_string;
                self.lex = Lex::Quoted {
                    backslash,
                    escaped: false,
                };
                self.in_statement = true;
            }
            b'"' => {
                self.lex = Lex::Identifier;
                self.in_statement = true;
            }
            b'$' if !is_identifier_byte(prev) => {
                self.lex = Lex::DollarTag(Vec::new());
                self.in_statement = true;
            }
            b if b.is_ascii_whitespace() => {}
            _ => self.in_statement = true,
        }
    }
}

/// The table a `COPY schema.table (cols) FROM stdin;` line loads, if the
/// line is one.
fn copy_from_stdin(candidate: &Candidate) -> Option<String> {
    let keyword = candidate.head.get(..5)?;
    if !keyword.eq_ignore_ascii_case(b"COPY ") || candidate.tail != FROM_STDIN {
        return None;
    }
    let rest = &candidate.head[5..];
    let (first, rest) = identifier(rest)?;
    let name = match rest.strip_prefix(b".") {
        Some(after_dot) => {
            let (second, _) = identifier(after_dot)?;
            format!("{first}.{second}")
        }
        None => first,
    };
    Some(name)
}

/// One identifier, unquoted (up to `.`, space or `(`) or `"quoted"` with
/// `""` for a quote, and what follows it.
fn identifier(text: &[u8]) -> Option<(String, &[u8])> {
    if let Some(quoted) = text.strip_prefix(b"\"") {
        let mut name = Vec::new();
        let mut at = 0;
        loop {
            match quoted.get(at)? {
                b'"' if quoted.get(at + 1) == Some(&b'"') => {
                    name.push(b'"');
                    at += 2;
                }
                b'"' => {
                    return Some((
                        String::from_utf8_lossy(&name).into_owned(),
                        &quoted[at + 1..],
                    ));
                }
                &byte => {
                    name.push(byte);
                    at += 1;
                }
            }
        }
    }
    let end = text
        .iter()
        .position(|&b| matches!(b, b'.' | b' ' | b'('))
        .unwrap_or(text.len());
    if end == 0 {
        return None;
    }
    Some((
        String::from_utf8_lossy(&text[..end]).into_owned(),
        &text[end..],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real `pg_dump --format=plain --clean --if-exists --no-owner` of a
    /// database with the awkward cases (PostgreSQL 15): quoted schema,
    /// table and column names, a dot inside a name, escaped newlines,
    /// an empty table, a table without columns and a one-column table
    /// with empty strings (rows that are empty lines), a function whose
    /// body has a `COPY … FROM stdin;` line, partitions, inheritance, a
    /// materialized view, grants and `\restrict`.
    const SAMPLE: &str = r#"--
-- PostgreSQL database dump
--

\restrict 61wYaj605jenVkBeixU6BvYaj91ER6ZnANqKToepXiIEUnJb4Ed08jPvnVjGuiq

-- Dumped from database version 15.18 (Debian 15.18-0+deb12u1)
-- Dumped by pg_dump version 15.18 (Debian 15.18-0+deb12u1)

SET statement_timeout = 0;
SET client_encoding = 'UTF8';
SET standard_conforming_strings = on;
SELECT pg_catalog.set_config('search_path', '', false);
SET check_function_bodies = false;

DROP TABLE IF EXISTS public.parted_1;
DROP TABLE IF EXISTS public."Order Items";
DROP TABLE IF EXISTS "My Schema"."t.x";
DROP FUNCTION IF EXISTS public.f();
DROP SCHEMA IF EXISTS "My Schema";
--
-- Name: My Schema; Type: SCHEMA; Schema: -; Owner: -
--

CREATE SCHEMA "My Schema";


--
-- Name: f(); Type: FUNCTION; Schema: public; Owner: -
--

CREATE FUNCTION public.f() RETURNS integer
    LANGUAGE plpgsql
    AS $$
begin
COPY customers FROM stdin;
return 1;
end $$;


CREATE FUNCTION public.g() RETURNS text
    LANGUAGE sql
    AS $body$ select 'x'
COPY customers FROM stdin;
$body$;


COMMENT ON TABLE public.customers IS 'it''s
COPY customers FROM stdin;
';

COMMENT ON COLUMN public.customers.note IS E'a \' quote
COPY customers FROM stdin;
';

/* a comment /* nested */
COPY customers FROM stdin;
*/

CREATE TABLE "My Schema"."t.x" (
    a integer
);


CREATE TABLE public."Order Items" (
    id integer,
    "weird ""col""" text
);


CREATE TABLE public.nocols (
);


--
-- Data for Name: t.x; Type: TABLE DATA; Schema: My Schema; Owner: -
--

COPY "My Schema"."t.x" (a) FROM stdin;
1
\.


--
-- Data for Name: Order Items; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public."Order Items" (id, "weird ""col""") FROM stdin;
1	a
2	
3	\N
\.


--
-- Data for Name: customers; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.customers (id, name, note) FROM stdin;
1	c1	line\nbreak\\x
2	c2	line\nbreak\\x
3	c3	\\.
4	c4	line\nbreak\\x
5	c5	line\nbreak\\x
\.


--
-- Data for Name: empty_t; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.empty_t (a) FROM stdin;
\.


--
-- Data for Name: nocols; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.nocols  FROM stdin;


\.


--
-- Data for Name: onecol; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.onecol (t) FROM stdin;


x
\\.
\.x
\
\.


--
-- Data for Name: parted_1; Type: TABLE DATA; Schema: public; Owner: -
--

COPY public.parted_1 (a) FROM stdin;
1
2
\.


SELECT pg_catalog.setval('public.customers_id_seq', 5, true);

ALTER TABLE ONLY public.customers
    ADD CONSTRAINT customers_pkey PRIMARY KEY (id);

GRANT SELECT ON TABLE public.customers TO app;

REFRESH MATERIALIZED VIEW public.mv;


--
-- PostgreSQL database dump complete
--

\unrestrict 61wYaj605jenVkBeixU6BvYaj91ER6ZnANqKToepXiIEUnJb4Ed08jPvnVjGuiq

"#;

    fn expected() -> TableRows {
        [
            ("My Schema.t.x", 1),
            ("public.Order Items", 3),
            ("public.customers", 5),
            ("public.empty_t", 0),
            ("public.nocols", 2),
            ("public.onecol", 6),
            ("public.parted_1", 2),
        ]
        .into_iter()
        .map(|(table, rows)| (table.to_owned(), rows))
        .collect()
    }

    fn scan_chunks<'a>(
        chunks: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<TableRows, CopyRowsError> {
        let mut scanner = CopyRows::new();
        for chunk in chunks {
            scanner.feed(chunk);
        }
        scanner.finish()
    }

    fn scan(dump: &str) -> Result<TableRows, CopyRowsError> {
        scan_chunks([dump.as_bytes()])
    }

    #[test]
    fn a_real_dump_is_counted_table_by_table() {
        assert_eq!(scan(SAMPLE).unwrap(), expected());
    }

    #[test]
    fn splitting_the_dump_at_any_byte_changes_nothing() {
        let bytes = SAMPLE.as_bytes();
        for at in 0..=bytes.len() {
            let (a, b) = bytes.split_at(at);
            assert_eq!(scan_chunks([a, b]).unwrap(), expected(), "split at {at}");
        }
    }

    #[test]
    fn splitting_the_dump_at_every_pair_of_offsets_changes_nothing() {
        let bytes = SAMPLE.as_bytes();
        // Every byte offset as the first cut, a spread of second cuts.
        for first in 0..bytes.len() {
            for second in (first..=bytes.len()).step_by(211) {
                let chunks = [&bytes[..first], &bytes[first..second], &bytes[second..]];
                assert_eq!(
                    scan_chunks(chunks).unwrap(),
                    expected(),
                    "cuts at {first} and {second}"
                );
            }
        }
    }

    #[test]
    fn one_byte_at_a_time_changes_nothing() {
        let bytes = SAMPLE.as_bytes();
        assert_eq!(scan_chunks(bytes.chunks(1)).unwrap(), expected());
        for size in [2, 3, 7, 64, 511] {
            assert_eq!(
                scan_chunks(bytes.chunks(size)).unwrap(),
                expected(),
                "{size}"
            );
        }
    }

    #[test]
    fn a_dump_cut_inside_data_is_truncated() {
        let cut = SAMPLE.find("4\tc4").unwrap();
        assert_eq!(
            scan(&SAMPLE[..cut]).unwrap_err(),
            CopyRowsError::Truncated {
                table: "public.customers".into(),
                rows: 3
            }
        );
        // Cut inside the terminator itself.
        let terminator = SAMPLE.find("5\tc5").unwrap() + "5\tc5\tline\\nbreak\\\\x\n\\".len();
        let error = scan(&SAMPLE[..terminator]).unwrap_err();
        assert_eq!(
            error,
            CopyRowsError::Truncated {
                table: "public.customers".into(),
                rows: 5
            }
        );
        assert!(error.to_string().contains("public.customers"), "{error}");
        // `\.` without its newline is not the end either.
        let error = scan(&SAMPLE[..terminator + 1]).unwrap_err();
        assert!(matches!(error, CopyRowsError::Truncated { rows: 5, .. }));
    }

    #[test]
    fn a_dump_without_data_has_no_tables() {
        assert_eq!(scan("").unwrap(), TableRows::new());
        assert_eq!(
            scan("CREATE TABLE public.t (a int);\n").unwrap(),
            TableRows::new()
        );
    }

    #[test]
    fn the_last_row_needs_no_more_than_its_newline() {
        let rows = scan("COPY public.t (a) FROM stdin;\n1\n2\n\\.\n").unwrap();
        assert_eq!(rows["public.t"], 2);
        // A dump whose last line has no newline after `\.` is cut short.
        assert!(scan("COPY public.t (a) FROM stdin;\n1\n\\.").is_err());
    }

    #[test]
    fn copy_lines_inside_strings_comments_and_statements_are_not_data() {
        let cases = [
            // Continuation of a statement begun on an earlier line.
            "SELECT 1,\nCOPY public.t FROM stdin;\n1\n\\.\n",
            "SELECT 'a\nCOPY public.t FROM stdin;\n1\n\\.\n';\n",
            "SELECT \"a\nCOPY public.t FROM stdin;\n1\n\\.\n\";\n",
            "SELECT $x$\nCOPY public.t FROM stdin;\n1\n\\.\n$x$;\n",
            "/*\nCOPY public.t FROM stdin;\n1\n\\.\n*/\n",
            "SELECT E'\\'\nCOPY public.t FROM stdin;\n1\n\\.\n';\n",
            "SELECT E'it''s \\' x\nCOPY public.t FROM stdin;\n1\n\\.\n';\n",
        ];
        for dump in cases {
            assert_eq!(scan(dump).unwrap(), TableRows::new(), "{dump:?}");
        }
    }

    #[test]
    fn what_ends_a_statement_lets_copy_begin() {
        let cases = [
            "SELECT 1;\nCOPY public.t (a) FROM stdin;\n1\n\\.\n",
            "SELECT 'it''s';\nCOPY public.t (a) FROM stdin;\n1\n\\.\n",
            "SELECT $$a$$;\nCOPY public.t (a) FROM stdin;\n1\n\\.\n",
            "SELECT $f$a$ $f$;\nCOPY public.t (a) FROM stdin;\n1\n\\.\n",
            "SELECT $1 - 2;\nCOPY public.t (a) FROM stdin;\n1\n\\.\n",
            "SELECT a$b;\nCOPY public.t (a) FROM stdin;\n1\n\\.\n",
            "SELECT 'a' -- note ' \nFROM x;\nCOPY public.t (a) FROM stdin;\n1\n\\.\n",
            "-- only a comment\nCOPY public.t (a) FROM stdin;\n1\n\\.\n",
            "/* a */\nCOPY public.t (a) FROM stdin;\n1\n\\.\n",
            "SELECT 2 / 1;\nCOPY public.t (a) FROM stdin;\n1\n\\.\n",
            "\\connect x\nCOPY public.t (a) FROM stdin;\n1\n\\.\n",
            "SELECT e'\\\\';\nCOPY public.t (a) FROM stdin;\n1\n\\.\n",
            // `E` ending an identifier does not make a backslash string.
            "SELECT name'x\\';\nCOPY public.t (a) FROM stdin;\n1\n\\.\n",
        ];
        for dump in cases {
            assert_eq!(scan(dump).unwrap()["public.t"], 1, "{dump:?}");
        }
    }

    #[test]
    fn identifiers_are_unquoted() {
        let rows = scan(concat!(
            "COPY \"a.b\".\"c\"\"d\" (x) FROM stdin;\n1\n\\.\n",
            "COPY noschema (x) FROM stdin;\n1\n2\n\\.\n",
            "COPY public.\"Ünïcode tåble\" (x) FROM stdin;\n\\.\n",
            "copy public.lower (x) from stdin;\n1\n\\.\n",
        ))
        .unwrap();
        assert_eq!(
            rows.into_iter().collect::<Vec<_>>(),
            [
                ("a.b.c\"d".to_owned(), 1),
                ("noschema".to_owned(), 2),
                ("public.lower".to_owned(), 1),
                ("public.Ünïcode tåble".to_owned(), 0),
            ]
        );
    }

    #[test]
    fn copy_lines_longer_than_the_kept_head_still_count() {
        let columns: Vec<String> = (0..400).map(|i| format!("column_number_{i}")).collect();
        let dump = format!(
            "COPY public.wide ({}) FROM stdin;\n1\n2\n3\n\\.\n",
            columns.join(", ")
        );
        assert!(dump.len() > HEAD_LIMIT * 4);
        assert_eq!(scan(&dump).unwrap()["public.wide"], 3);
    }

    #[test]
    fn huge_rows_are_counted_without_being_kept() {
        let mut scanner = CopyRows::new();
        scanner.feed(b"COPY public.big (a) FROM stdin;\n");
        let row = vec![b'x'; 1 << 20];
        for _ in 0..64 {
            scanner.feed(&row);
        }
        scanner.feed(b"\n\\.\n");
        assert_eq!(scanner.finish().unwrap()["public.big"], 1);
    }

    #[test]
    fn the_scanner_keeps_only_a_line_head() {
        let mut scanner = CopyRows::new();
        scanner.feed(b"COMMENT ON TABLE t IS '");
        scanner.feed(&vec![b'y'; 100_000]);
        match &scanner.mode {
            Mode::Sql(sql) => {
                assert!(sql.candidate.as_ref().unwrap().head.len() <= HEAD_LIMIT);
            }
            Mode::Data(_) => panic!("not data"),
        }
    }

    #[test]
    fn a_table_dumped_twice_adds_up() {
        let dump =
            "COPY public.t (a) FROM stdin;\n1\n\\.\nCOPY public.t (a) FROM stdin;\n2\n3\n\\.\n";
        assert_eq!(scan(dump).unwrap()["public.t"], 3);
    }
}
