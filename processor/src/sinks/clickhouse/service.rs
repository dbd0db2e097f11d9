//! The HTTP client side: inserts of rows with the `clickhouse` crate (RowBinary, no compression:
//! ClickHouse 18.16 compresses responses in a way the crate cannot read), DDL statements, and the
//! classification of failures into transient (retry), rejected (the data) and fatal.

use std::time::Duration;

use clickhouse::error::Error;
use clickhouse::insert::Insert;
use clickhouse::Client;

use super::config::ClickHouseConfig;
use super::encoder::{decode, BadRowRow, EventRow};

/// Why a request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// The network, a timeout, or a server that is down, starting or overloaded: retry.
    Transient(String),
    /// The server refused the data: some row of the insert is at fault.
    Rejected(String),
    /// A condition retrying cannot fix (unknown table, bad credentials, read-only user).
    Fatal(String),
}

/// ClickHouse exception codes caused by the inserted data itself.
const DATA_ERROR_CODES: [u32; 14] = [
    6,   // CANNOT_PARSE_TEXT
    26,  // CANNOT_PARSE_QUOTED_STRING
    27,  // CANNOT_PARSE_INPUT_ASSERTION_FAILED
    38,  // CANNOT_PARSE_DATE
    41,  // CANNOT_PARSE_DATETIME
    53,  // TYPE_MISMATCH
    69,  // ARGUMENT_OUT_OF_BOUND
    70,  // CANNOT_CONVERT_TYPE
    72,  // CANNOT_PARSE_NUMBER
    117, // INCORRECT_DATA
    131, // TOO_LARGE_STRING_SIZE
    321, // VALUE_IS_OUT_OF_RANGE_OF_DATA_TYPE
    395, // FUNCTION_THROW_IF_VALUE_IS_NON_ZERO (a view's check)
    469, // VIOLATED_CONSTRAINT
];

/// ClickHouse exception codes that retrying does not fix.
const FATAL_CODES: [u32; 10] = [
    16,  // NO_SUCH_COLUMN_IN_TABLE
    47,  // UNKNOWN_IDENTIFIER
    60,  // UNKNOWN_TABLE
    62,  // SYNTAX_ERROR
    81,  // UNKNOWN_DATABASE
    164, // READONLY
    192, // UNKNOWN_USER
    193, // WRONG_PASSWORD
    497, // ACCESS_DENIED
    516, // AUTHENTICATION_FAILED
];

/// The exception code in a ClickHouse error body: `Code: 60, e.displayText() = …` (18.16) or
/// `Code: 60. DB::Exception: …` (current releases).
fn exception_code(message: &str) -> Option<u32> {
    let rest = &message[message.rfind("Code: ")? + 6..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    rest[..digits].parse().ok()
}

/// Sorts a client error into what to do about it.
pub fn classify(error: &Error) -> Failure {
    let message = error.to_string();
    match error {
        Error::Network(_) | Error::TimedOut => Failure::Transient(message),
        Error::BadResponse(body) => match exception_code(body) {
            Some(code) if DATA_ERROR_CODES.contains(&code) => Failure::Rejected(message),
            Some(code) if FATAL_CODES.contains(&code) => Failure::Fatal(message),
            // Other exceptions (too many parts, memory limit, timeouts, a replica gone
            // read-only) and bodies without a code (a proxy's 502/503) pass.
            _ => Failure::Transient(message),
        },
        _ => Failure::Fatal(message),
    }
}

/// One ClickHouse server's HTTP interface, for one events table and its bad-rows table.
#[derive(Clone)]
pub struct Service {
    client: Client,
    table: String,
    bad_rows_table: String,
    timeout: Duration,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl Service {
    /// A client for `config` (validated).
    pub fn new(config: &ClickHouseConfig) -> Service {
        let mut client = Client::default()
            .with_url(&config.url)
            .with_compression(clickhouse::Compression::None);
        if let Some(user) = &config.user {
            client = client.with_user(user);
        }
        if let Some(password) = &config.password {
            client = client.with_password(password);
        }
        Service {
            client,
            table: format!("{}.{}", config.database, config.table),
            bad_rows_table: format!("{}.{}", config.database, config.bad_rows_table),
            timeout: Duration::from_millis(config.request_timeout_ms),
        }
    }

    /// `database.table`.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// `database.bad_rows_table`.
    pub fn bad_rows_table(&self) -> &str {
        &self.bad_rows_table
    }

    /// Inserts `rows` into the bad-rows table in one request.
    pub async fn insert_bad_rows(&self, rows: &[BadRowRow]) -> Result<(), Failure> {
        let mut insert = self
            .client
            .insert::<BadRowRow>(&self.bad_rows_table)
            .map_err(|e| classify(&e))?
            .with_timeouts(Some(self.timeout), Some(self.timeout));
        for row in rows {
            insert.write(row).await.map_err(|e| classify(&e))?;
        }
        insert.end().await.map_err(|e| classify(&e))
    }

    /// Starts an insert: rows written to it are sent while they are written (in chunks of
    /// 256 KiB); `end` waits for the server's answer.
    pub fn start_insert<'a>(&self) -> Result<Insert<EventRow<'a>>, Failure> {
        Ok(self
            .client
            .insert::<EventRow<'a>>(&self.table)
            .map_err(|e| classify(&e))?
            .with_timeouts(Some(self.timeout), Some(self.timeout)))
    }

    /// Inserts the rows of `docs` (documents that [`decode`] reads) in one request, decoding
    /// each again as it is sent (decoding is deterministic, and keeping every row of a batch
    /// would take more memory than the documents themselves).
    pub async fn insert<'a>(&self, docs: impl Iterator<Item = &'a [u8]>) -> Result<(), Failure> {
        let mut insert = self.start_insert()?;
        for doc in docs {
            if let Ok(row) = decode(doc) {
                insert.write(&row).await.map_err(|e| classify(&e))?;
            }
        }
        insert.end().await.map_err(|e| classify(&e))
    }

    /// Runs one statement that returns nothing.
    pub async fn execute(&self, sql: &str) -> Result<(), Failure> {
        let query = self.client.query(sql).execute();
        match tokio::time::timeout(self.timeout, query).await {
            Ok(result) => result.map_err(|e| classify(&e)),
            Err(_) => Err(Failure::Transient(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// Whether `qualified` (`database.table`) exists.
    pub async fn table_exists(&self, qualified: &str) -> Result<bool, Failure> {
        let (database, table) = qualified.split_once('.').unwrap_or(("", qualified));
        let query = self
            .client
            .query("SELECT count() FROM system.tables WHERE database = ? AND name = ?")
            .bind(database)
            .bind(table)
            .fetch_one::<u64>();
        match tokio::time::timeout(self.timeout, query).await {
            Ok(result) => result.map(|n| n > 0).map_err(|e| classify(&e)),
            Err(_) => Err(Failure::Transient(format!(
                "no answer within {:?}",
                self.timeout
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_exception_codes_of_old_and_new_servers() {
        let old = "Code: 395, e.displayText() = DB::Exception: Value passed to 'throwIf' \
                   function is non zero, e.what() = DB::Exception";
        assert_eq!(exception_code(old), Some(395));
        let new = "Code: 60. DB::Exception: Table x.y does not exist. (UNKNOWN_TABLE) \
                   (version 24.10.1.2812 (official build))";
        assert_eq!(exception_code(new), Some(60));
        assert_eq!(exception_code("502 Bad Gateway"), None);
    }

    #[test]
    fn sorts_failures() {
        let bad = |body: &str| classify(&Error::BadResponse(body.to_owned()));
        assert!(matches!(
            bad("Code: 117, e.displayText() = x"),
            Failure::Rejected(_)
        ));
        assert!(matches!(
            bad("Code: 60. DB::Exception: x"),
            Failure::Fatal(_)
        ));
        assert!(matches!(
            bad("Code: 252. Too many parts"),
            Failure::Transient(_)
        ));
        assert!(matches!(
            bad("503 Service Unavailable"),
            Failure::Transient(_)
        ));
        assert!(matches!(classify(&Error::TimedOut), Failure::Transient(_)));
    }
}
