//! Finding the keys of a store: ListKeys over the whole account, DescribeKey on every key
//! (KMS has no filter by store), concurrent and paced, one page per call so a step can stop
//! between pages and resume from the ListKeys marker.

use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt, TryStreamExt};

use crate::deadline::Deadline;
use crate::error::DecommissionError;
use crate::keys::{StoreKey, TargetStore};
use crate::kms::Kms;

/// One ListKeys page, filtered down to the target store's keys.
#[derive(Debug, Clone, Default)]
pub struct Page {
    /// The store's keys on this page, in ListKeys order.
    pub keys: Vec<StoreKey>,
    /// Keys of the account on this page.
    pub scanned: u64,
    /// Marker of the next page; `None` after the last page.
    pub next_cursor: Option<String>,
}

/// Lists one page of the account's keys from `cursor` and describes each of them.
/// Keys deleted between ListKeys and DescribeKey are skipped.
pub async fn scan_page(
    kms: &Kms,
    target: &TargetStore,
    cursor: Option<&str>,
    page_size: i32,
) -> Result<Page, DecommissionError> {
    let page = kms.list_keys(page_size, cursor).await?;
    let scanned = page.key_ids.len() as u64;
    let described: Vec<Option<StoreKey>> = stream::iter(page.key_ids)
        .map(|id| async move {
            let metadata = kms.describe_key(&id).await?;
            Ok::<_, DecommissionError>(metadata.and_then(|m| StoreKey::from_metadata(&m, target)))
        })
        .buffered(kms.pacing().concurrency)
        .try_collect()
        .await?;
    Ok(Page {
        keys: described.into_iter().flatten().collect(),
        scanned,
        next_cursor: page.next_marker,
    })
}

/// How a batch step pages through the account's keys.
#[derive(Debug, Clone, Copy)]
pub struct Paging<'a> {
    /// The invocation's deadline.
    pub deadline: &'a Deadline,
    /// Time to keep free before the deadline.
    pub margin: Duration,
    /// The largest ListKeys page (1-1000).
    pub max_page_size: i32,
    /// What the step spends on each key of the store: one over its slowest paced per-key
    /// operation's rate, or zero when store keys cost no more than the others.
    pub per_store_key: Duration,
}

/// Scans the account's keys page by page from `cursor`, handing each page to `on_page`, until the
/// last page or until the deadline leaves no room for another page ([`may_start_another_page`]).
/// Pages are sized by [`page_size_within`]. Returns the cursor to resume from, `None` when the
/// scan is complete. The one loop every batch step runs.
pub async fn scan_pages(
    kms: &Kms,
    target: &TargetStore,
    mut cursor: Option<String>,
    paging: Paging<'_>,
    mut on_page: impl AsyncFnMut(Page) -> Result<(), DecommissionError>,
) -> Result<Option<String>, DecommissionError> {
    loop {
        let started = Instant::now();
        let page_size = page_size_within(
            paging.deadline,
            paging.margin,
            paging.per_store_key,
            paging.max_page_size,
        );
        let page = scan_page(kms, target, cursor.as_deref(), page_size).await?;
        let next_cursor = page.next_cursor.clone();
        on_page(page).await?;
        cursor = next_cursor;
        if cursor.is_none()
            || !may_start_another_page(paging.deadline, started.elapsed(), paging.margin)
        {
            return Ok(cursor);
        }
    }
}

/// One over `rate` per second: what one call paced at `rate` costs (a non-positive rate counts
/// as one call per thousand seconds).
pub fn per_call(rate: f64) -> Duration {
    Duration::from_secs_f64(1.0 / rate.max(0.001))
}

/// Decides between pages whether a batch step may start another one: it must be able to finish
/// a page as long as the last one took (plus half again) and still return `margin` before the
/// deadline.
pub fn may_start_another_page(deadline: &Deadline, last_page: Duration, margin: Duration) -> bool {
    deadline.allows(last_page.saturating_add(last_page / 2), margin)
}

/// The ListKeys page size for a step that spends `per_store_key` on each key of the store (its
/// slowest paced operation): a page whose keys all belong to the store fits in half the time left
/// before `margin`, so the step returns its cursor in time even when the store holds every key of
/// the account. At least 1, at most `max`.
pub fn page_size_within(
    deadline: &Deadline,
    margin: Duration,
    per_store_key: Duration,
    max: i32,
) -> i32 {
    let usable = deadline.remaining().saturating_sub(margin) / 2;
    let fits = usable.as_secs_f64() / per_store_key.as_secs_f64().max(f64::EPSILON);
    // `as` saturates: a huge quotient becomes i32::MAX, NaN 0; the clamp bounds both.
    (fits.floor() as i32).clamp(1, max.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_of_store_keys_fits_in_half_the_time_left() {
        let per_key = Duration::from_secs_f64(1.0 / 4.75);
        let margin = Duration::from_secs(2);
        // 300 s function: (298 / 2) x 4.75 = 707 keys.
        let page = page_size_within(
            &Deadline::after(Duration::from_secs(300)),
            margin,
            per_key,
            1000,
        );
        assert!((700..=708).contains(&page), "{page}");
        // 15 s function: (13 / 2) x 4.75 = 30 keys.
        let page = page_size_within(
            &Deadline::after(Duration::from_secs(15)),
            margin,
            per_key,
            1000,
        );
        assert!((29..=30).contains(&page), "{page}");
        // Fast operations: the configured maximum.
        let page = page_size_within(
            &Deadline::after(Duration::from_secs(300)),
            margin,
            Duration::from_millis(1),
            1000,
        );
        assert_eq!(page, 1000);
        // No time left: one key, so every invocation still makes progress.
        assert_eq!(
            page_size_within(&Deadline::after(Duration::ZERO), margin, per_key, 1000),
            1
        );
    }

    #[test]
    fn another_page_needs_room_for_a_page_and_the_margin() {
        let deadline = Deadline::after(Duration::from_secs(60));
        assert!(may_start_another_page(
            &deadline,
            Duration::from_secs(10),
            Duration::from_secs(10)
        ));
        assert!(!may_start_another_page(
            &deadline,
            Duration::from_secs(40),
            Duration::from_secs(10)
        ));
        let near = Deadline::after(Duration::from_millis(5));
        assert!(!may_start_another_page(
            &near,
            Duration::ZERO,
            Duration::from_secs(10)
        ));
    }
}
