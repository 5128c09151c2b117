//! The shard's local order books: diff events in, snapshots asked of the REST thread
//! and applied, views published to the board and tops sent to the sinks.
//!
//! Runs on the shard core with the rest of [`ShardState`]: the books need no locks.
//! Publishing takes the board's lock for an `Arc` swap, at most once per book and
//! publication period.

use std::collections::HashMap;
use std::sync::Arc;

use super::{Envelope, Record, ShardState};
use crate::book::board::{Board, BookView, Features};
use crate::book::{snapshot_limit, Applied, LocalBook, Resync, SnapshotOutcome};
use crate::config::BooksConfig;
use crate::market::Symbol;
use crate::message::rest::{BookAnswer, BookRequest};
use crate::message::BookTop;
use crate::signals::rules::BookSignal;
use crate::wire::DepthUpdate;

/// After a snapshot request fails (or finds no room in the REST queue), how long
/// before the book asks again.
pub const BOOK_RETRY_NS: u64 = 1_000_000_000;
/// A snapshot asked for and not answered within this long is asked again (its answer
/// was lost: the REST thread found the answer queue full). Longer than the REST
/// thread's longest wait for the minute's weight budget; a request still queued there
/// is not queued twice.
pub const BOOK_ANSWER_TIMEOUT_NS: u64 = 90_000_000_000;

/// One book and its publication state.
struct Kept {
    book: LocalBook,
    /// When it was last published (mono ns), and whether it changed since.
    published_ns: u64,
    dirty: bool,
    /// No snapshot is asked before this time (after a failure).
    retry_at_ns: u64,
    /// When the snapshot awaited was asked for (mono ns).
    asked_at_ns: u64,
}

/// The books of one shard.
pub(super) struct Books {
    kept: Vec<Kept>,
    index: HashMap<Symbol, usize>,
    board: Arc<Board>,
    top_levels: usize,
    publish_ns: u64,
    limit: u32,
    weight: u32,
}

impl Books {
    pub(super) fn new(
        config: &BooksConfig,
        symbols: &[Symbol],
        board: Arc<Board>,
        now_ns: u64,
    ) -> Books {
        let (limit, weight) = snapshot_limit(config.max_levels);
        let mine: Vec<Symbol> = config
            .symbols
            .iter()
            .copied()
            .filter(|s| symbols.contains(s))
            .collect();
        Books {
            kept: mine
                .iter()
                .map(|s| Kept {
                    book: LocalBook::new(*s, config.max_levels, config.top_levels, now_ns),
                    published_ns: 0,
                    dirty: true,
                    retry_at_ns: 0,
                    asked_at_ns: 0,
                })
                .collect(),
            index: mine.iter().enumerate().map(|(i, s)| (*s, i)).collect(),
            board,
            top_levels: config.top_levels,
            publish_ns: config.publish_ms.saturating_mul(1_000_000),
            limit,
            weight,
        }
    }

    pub(super) fn len(&self) -> usize {
        self.kept.len()
    }

    fn valid(&self) -> usize {
        self.kept.iter().filter(|k| k.book.is_valid()).count()
    }

    /// What `symbol`'s book says now, for the signal rules; `None` without a valid
    /// book.
    pub(super) fn signal(&self, symbol: Symbol) -> Option<BookSignal> {
        let kept = &self.kept[*self.index.get(&symbol)?];
        if !kept.book.is_valid() {
            return None;
        }
        let f = Features::of(
            kept.book.bids().iter_best_first().take(self.top_levels),
            kept.book.asks().iter_best_first().take(self.top_levels),
        )?;
        let x = |d: rust_decimal::Decimal| crate::signals::rules::decimal_to_f64(d);
        Some(BookSignal {
            imbalance: f.imbalance,
            spread: x(f.spread),
            mid: x(f.mid),
            microprice: x(f.microprice),
        })
    }
}

impl ShardState {
    /// Keeps a local book for each of `config.symbols` this shard owns, publishing
    /// views to `board`.
    pub fn with_books(
        mut self,
        config: &BooksConfig,
        board: Arc<Board>,
        now_ns: u64,
    ) -> ShardState {
        let books = Books::new(config, &self.symbol_list, board, now_ns);
        // Readers see every book from the start: invalid until its first snapshot.
        for kept in &books.kept {
            books
                .board
                .publish(Arc::new(BookView::of(&kept.book, books.top_levels)));
        }
        if books.len() > 0 {
            self.stats.books.books.set(books.len() as i64);
            self.books = Some(books);
        }
        self
    }

    /// One diff depth event into its book, if the symbol has one.
    pub(super) fn on_depth(&mut self, d: &DepthUpdate<'_>, recv_ns: u64) {
        let Some(books) = self.books.as_mut() else {
            return;
        };
        let Some(&i) = books.index.get(&d.symbol) else {
            return;
        };
        let stats = &self.stats.books;
        let kept = &mut books.kept[i];
        let drops = kept.book.buffer_drops;
        let applied = kept.book.on_diff(
            d.first_update_id,
            d.final_update_id,
            d.event_time_us,
            d.bids,
            d.asks,
            recv_ns,
        );
        stats.buffer_drops.add(kept.book.buffer_drops - drops);
        let publish = match applied {
            Applied::Live { top } => {
                stats.diffs_applied.inc();
                kept.dirty = true;
                if top {
                    Some(false)
                } else {
                    None
                }
            }
            Applied::Repeat => {
                stats.diffs_repeated.inc();
                None
            }
            Applied::Buffered => None,
            Applied::Invalidated(cause) => {
                stats.resyncs[cause as usize].inc();
                kept.dirty = true;
                // Readers learn at once that the book is not to be trusted.
                Some(true)
            }
        };
        self.after_book_change(i, publish, recv_ns);
    }

    /// Publishes book `i` when due (or `now` is forced), sends its top when it changed,
    /// and asks for its snapshot when it needs one. `forced`: `Some(true)` publishes
    /// now, `Some(false)` sends the top at least.
    fn after_book_change(&mut self, i: usize, forced: Option<bool>, now_ns: u64) {
        let Some(books) = self.books.as_mut() else {
            return;
        };
        let kept = &books.kept[i];
        let due = kept.dirty && now_ns.saturating_sub(kept.published_ns) >= books.publish_ns;
        if forced == Some(true) || due {
            self.publish_book(i, now_ns);
        } else if forced == Some(false) {
            self.send_top(i, false, now_ns);
        }
        self.ask_snapshot(i, now_ns);
    }

    fn publish_book(&mut self, i: usize, now_ns: u64) {
        let Some(books) = self.books.as_mut() else {
            return;
        };
        let kept = &mut books.kept[i];
        let view = BookView::of(&kept.book, books.top_levels);
        books.board.publish(Arc::new(view));
        kept.published_ns = now_ns;
        kept.dirty = false;
        self.stats.books.published.inc();
        self.stats.books.valid.set(books.valid() as i64);
        self.send_top(i, true, now_ns);
    }

    fn send_top(&mut self, i: usize, published: bool, now_ns: u64) {
        let Some(books) = self.books.as_ref() else {
            return;
        };
        let book = &books.kept[i].book;
        let (bid, bid_qty) = book
            .bids()
            .best()
            .map_or((0, Default::default()), |l| (l.price, l.qty));
        let (ask, ask_qty) = book
            .asks()
            .best()
            .map_or((0, Default::default()), |l| (l.price, l.qty));
        let top = BookTop {
            symbol: book.symbol,
            last_update_id: book.last_update_id(),
            event_time_us: book.event_time_us(),
            valid: book.is_valid(),
            published,
            bid,
            bid_qty,
            ask,
            ask_qty,
        };
        let env = Envelope {
            shard: self.index,
            recv_ns: now_ns,
            parsed_ns: now_ns,
            record: Record::Book(top),
        };
        self.outlets.send_latest(env);
    }

    /// Asks the REST thread for book `i`'s snapshot when it wants one and may ask.
    fn ask_snapshot(&mut self, i: usize, now_ns: u64) {
        let (Some(books), Some(link)) = (self.books.as_mut(), self.link.as_ref()) else {
            return;
        };
        let kept = &mut books.kept[i];
        if kept.book.awaiting_snapshot()
            && now_ns.saturating_sub(kept.asked_at_ns) >= BOOK_ANSWER_TIMEOUT_NS
        {
            kept.book.snapshot_failed();
            self.stats.books.snapshot_failures.inc();
        }
        if !kept.book.wants_snapshot() || now_ns < kept.retry_at_ns {
            return;
        }
        let request = BookRequest {
            symbol: kept.book.symbol,
            limit: books.limit,
            weight: books.weight,
        };
        if link.book_requests.push(request).is_ok() {
            kept.book.snapshot_asked();
            kept.asked_at_ns = now_ns;
            self.stats.books.snapshots_asked.inc();
            // A book is invalid until its snapshot comes: the REST thread goes now.
            link.wake_rest();
        } else {
            kept.retry_at_ns = now_ns + BOOK_RETRY_NS;
            self.stats.books.snapshot_requests_dropped.inc();
        }
    }

    /// Applies the snapshots the REST thread has answered; called by the flusher.
    pub(super) fn apply_book_answers(&mut self, now_ns: u64) {
        let Some(link) = self.link.clone() else {
            return;
        };
        while let Some(answer) = link.book_answers.pop() {
            self.apply_book_answer(&answer, now_ns);
        }
    }

    /// Applies one answer to a snapshot request at `now_ns`.
    pub fn apply_book_answer(&mut self, answer: &BookAnswer, now_ns: u64) {
        let Some(books) = self.books.as_mut() else {
            return;
        };
        let Some(&i) = books.index.get(&answer.symbol) else {
            return;
        };
        let stats = &self.stats.books;
        let kept = &mut books.kept[i];
        let Some(snapshot) = &answer.snapshot else {
            stats.snapshot_failures.inc();
            kept.book.snapshot_failed();
            kept.retry_at_ns = now_ns + BOOK_RETRY_NS;
            return;
        };
        let publish = match kept.book.on_snapshot(snapshot, now_ns) {
            SnapshotOutcome::Synced { invalid_ns } => {
                stats.snapshots_applied.inc();
                stats.invalid_ns.add(invalid_ns);
                true
            }
            SnapshotOutcome::TooOld => {
                stats.snapshots_too_old.inc();
                false
            }
            SnapshotOutcome::Unwanted => false,
            SnapshotOutcome::Invalidated(cause) => {
                stats.snapshots_applied.inc();
                stats.resyncs[cause as usize].inc();
                true
            }
        };
        kept.dirty |= publish;
        self.after_book_change(i, publish.then_some(true), now_ns);
    }

    /// The connection carrying `streams` was lost at `now_ns`: the books of its diff
    /// depth streams resynchronise (events may have been missed while it was down).
    pub fn depth_streams_lost(&mut self, streams: &[String], now_ns: u64) {
        let Some(books) = self.books.as_mut() else {
            return;
        };
        let mut lost = Vec::new();
        for stream in streams {
            let Some(symbol) = crate::market::diff_depth_stream_symbol(stream) else {
                continue;
            };
            let Ok(symbol) = Symbol::new(symbol) else {
                continue;
            };
            if let Some(&i) = books.index.get(&symbol) {
                let book = &mut books.kept[i].book;
                if book.is_valid() {
                    self.stats.books.resyncs[Resync::Reconnect as usize].inc();
                }
                book.invalidate(now_ns);
                lost.push(i);
            }
        }
        for i in lost {
            self.publish_book(i, now_ns);
        }
    }

    /// Periodic work of the books at `now_ns`: views due for publication, snapshot
    /// requests due again.
    pub(super) fn tend_books(&mut self, now_ns: u64) {
        let n = self.books.as_ref().map_or(0, Books::len);
        for i in 0..n {
            self.after_book_change(i, None, now_ns);
        }
    }
}
