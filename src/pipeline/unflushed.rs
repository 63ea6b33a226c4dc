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

/// Unflushed bytes per table and in all. A [`Flush::Table`] is counted as
/// flushed when [`Unflushed::appended`] returns it; after a [`Flush::All`]
/// the counts stay until [`Unflushed::flushed_all`], as they say which
/// tables to flush. Either way the caller flushes what is due or abandons
/// the transaction.
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

    /// Counts `bytes` appended to `table` and says what is now due to flush:
    /// the table alone once it holds its limit (the others hold less than
    /// the total limit, or all would have been flushed before), otherwise
    /// every table once all together hold the total limit ([`Flush::All`]:
    /// the caller flushes every table that [`holds`] bytes, then calls
    /// [`flushed_all`]).
    ///
    /// [`holds`]: Unflushed::holds
    /// [`flushed_all`]: Unflushed::flushed_all
    pub fn appended(&mut self, table: usize, bytes: u64) -> Flush {
        self.tables[table] += bytes;
        self.total += bytes;
        if self.tables[table] >= self.limits.table {
            self.total -= std::mem::take(&mut self.tables[table]);
            Flush::Table
        } else if self.total >= self.limits.all {
            Flush::All
        } else {
            Flush::Nothing
        }
    }

    /// Bytes `table` holds.
    pub fn holds(&self, table: usize) -> u64 {
        self.tables[table]
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
        let mut u = Unflushed::new(4, LIMITS);
        assert_eq!(u.appended(0, 3), Flush::Nothing);
        assert_eq!(u.appended(0, 1), Flush::Table);
        assert_eq!(u.holds(0), 0);
        assert_eq!(u.appended(0, 3), Flush::Nothing);
        assert_eq!(u.appended(1, 3), Flush::Nothing);
        // Table 1 reaches its limit: it alone flushes.
        assert_eq!(u.appended(1, 1), Flush::Table);
        assert_eq!((u.holds(0), u.holds(1)), (3, 0));
        assert_eq!(u.appended(1, 3), Flush::Nothing);
        assert_eq!(u.appended(2, 3), Flush::Nothing);
        // 9 held, each table under its own limit; one more byte in a
        // fourth table reaches the total limit: all flush.
        assert_eq!(u.appended(3, 1), Flush::All);
        u.flushed_all();
        assert!((0..4).all(|t| u.holds(t) == 0));
    }

    #[test]
    fn a_table_past_its_limit_flushes_alone_even_when_all_reach_theirs() {
        let mut u = Unflushed::new(3, LIMITS);
        for t in 0..3 {
            assert_eq!(u.appended(t, 3), Flush::Nothing);
        }
        // 10 held in all, but table 2 holds its 4: flushing it leaves 6.
        assert_eq!(u.appended(2, 1), Flush::Table);
        assert_eq!((u.holds(0), u.holds(1), u.holds(2)), (3, 3, 0));
    }

    proptest! {
        /// Against a model of what the caller's appenders hold (bytes added
        /// on every append, a table's dropped when it alone is flushed,
        /// every table's when all are): the account says what they hold,
        /// and once what is due is flushed every table holds less than its
        /// limit and all together less than theirs, the bound the appenders'
        /// memory relies on. A flush is only due when a limit was reached.
        #[test]
        fn held_bytes_stay_bounded(appends in prop::collection::vec((0usize..5, 0u64..6), 0..200)) {
            let mut u = Unflushed::new(5, LIMITS);
            let mut held = [0u64; 5];
            for (table, bytes) in appends {
                held[table] += bytes;
                let reached =
                    held[table] >= LIMITS.table || held.iter().sum::<u64>() >= LIMITS.all;
                match u.appended(table, bytes) {
                    Flush::All => {
                        prop_assert!(reached);
                        u.flushed_all();
                        held = [0; 5];
                    }
                    Flush::Table => {
                        prop_assert!(held[table] >= LIMITS.table);
                        held[table] = 0;
                    }
                    Flush::Nothing => prop_assert!(!reached),
                }
                for (t, &h) in held.iter().enumerate() {
                    prop_assert_eq!(u.holds(t), h);
                    prop_assert!(h < LIMITS.table);
                }
                prop_assert!(held.iter().sum::<u64>() < LIMITS.all);
            }
        }
    }
}
