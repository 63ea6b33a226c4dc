//! Bytes appended through per-table appenders and not yet handed to the
//! transaction. A DuckDB appender buffers its rows outside `memory_limit`
//! until it is flushed, so the raw sink and the typed writer both bound that
//! buffer, per table and across all tables, with this one account.

/// When appenders hand their rows to the transaction.
#[derive(Debug, Clone, Copy)]
pub struct FlushLimits {
    /// One table's appender, once it holds this many bytes.
    pub table: u64,
    /// Every appender, once all of them together hold this many: with
    /// hundreds of tables, each below `table`, the buffers would otherwise
    /// add up to a whole commit.
    pub all: u64,
}

/// What an append made due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flush {
    Nothing,
    /// Flush the table just appended to.
    Table,
    /// Flush every table that holds bytes ([`Unflushed::holds`]).
    All,
}

/// Unflushed bytes per table and in all. What [`Unflushed::appended`] makes
/// due is counted as flushed at once: the caller flushes it or abandons the
/// transaction.
#[derive(Debug)]
pub struct Unflushed {
    limits: FlushLimits,
    tables: Vec<u64>,
    total: u64,
}

impl Unflushed {
    pub fn new(tables: usize, limits: FlushLimits) -> Unflushed {
        Unflushed {
            limits,
            tables: vec![0; tables],
            total: 0,
        }
    }

    /// Counts `bytes` appended to `table` and says what is now due to flush.
    /// On [`Flush::All`] the caller flushes every table that [`holds`]
    /// bytes and then calls [`flushed_all`].
    ///
    /// [`holds`]: Unflushed::holds
    /// [`flushed_all`]: Unflushed::flushed_all
    pub fn appended(&mut self, table: usize, bytes: u64) -> Flush {
        self.tables[table] += bytes;
        self.total += bytes;
        if self.total >= self.limits.all {
            Flush::All
        } else if self.tables[table] >= self.limits.table {
            self.flushed(table);
            Flush::Table
        } else {
            Flush::Nothing
        }
    }

    /// Bytes `table` holds.
    pub fn holds(&self, table: usize) -> u64 {
        self.tables[table]
    }

    /// `table`'s appender handed its rows over (or dropped them).
    pub fn flushed(&mut self, table: usize) {
        self.total -= std::mem::take(&mut self.tables[table]);
    }

    /// Every appender handed its rows over (or dropped them).
    pub fn flushed_all(&mut self) {
        self.tables.fill(0);
        self.total = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const LIMITS: FlushLimits = FlushLimits { table: 4, all: 10 };

    #[test]
    fn a_busy_table_flushes_alone_and_many_quiet_ones_flush_together() {
        let mut u = Unflushed::new(3, LIMITS);
        assert_eq!(u.appended(0, 3), Flush::Nothing);
        assert_eq!(u.appended(0, 1), Flush::Table);
        assert_eq!(u.holds(0), 0);
        assert_eq!(u.appended(0, 3), Flush::Nothing);
        assert_eq!(u.appended(1, 3), Flush::Nothing);
        // Table 1 reaches its limit while all hold 7: it alone flushes.
        assert_eq!(u.appended(1, 1), Flush::Table);
        assert_eq!((u.holds(0), u.holds(1)), (3, 0));
        assert_eq!(u.appended(1, 3), Flush::Nothing);
        assert_eq!(u.appended(2, 3), Flush::Nothing);
        // 10 held, each table under its own limit: all flush.
        assert_eq!(u.appended(2, 1), Flush::All);
        u.flushed_all();
        assert_eq!((u.holds(0), u.holds(1), u.holds(2)), (0, 0, 0));
    }

    proptest! {
        /// Whatever the appends, once what is due is flushed every table
        /// holds less than its limit and all together less than theirs: the
        /// bound the appenders' memory relies on.
        #[test]
        fn held_bytes_stay_bounded(appends in prop::collection::vec((0usize..5, 0u64..6), 0..200)) {
            let mut u = Unflushed::new(5, LIMITS);
            for (table, bytes) in appends {
                match u.appended(table, bytes) {
                    Flush::All => u.flushed_all(),
                    Flush::Table => prop_assert_eq!(u.holds(table), 0),
                    Flush::Nothing => {}
                }
                let total: u64 = (0..5).map(|t| u.holds(t)).sum();
                prop_assert_eq!(total, u.total);
                prop_assert!(total < LIMITS.all);
                prop_assert!((0..5).all(|t| u.holds(t) < LIMITS.table));
            }
        }
    }
}
