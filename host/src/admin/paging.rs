//! Page sizes and cursors shared by every list endpoint: `?limit=` (1-1000, default 100) and
//! `?after=<the previous answer's next>`. An answer carries `next` (null on the last page), so
//! no list is ever cut short silently.

use crate::error::ApiError;

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

/// The page size asked for, refused outside 1-[`MAX_LIMIT`].
pub fn limit(asked: Option<u32>) -> Result<u32, ApiError> {
    match asked {
        None => Ok(DEFAULT_LIMIT),
        Some(n @ 1..=MAX_LIMIT) => Ok(n),
        Some(n) => Err(ApiError::bad_request("invalid_limit", format!("limit {n} is not within 1-{MAX_LIMIT}"))),
    }
}

pub fn invalid_cursor(cursor: &str) -> ApiError {
    ApiError::bad_request(
        "invalid_cursor",
        format!("`{cursor}` is not a cursor of this list: pass the `next` of the previous page as `after`"),
    )
}

/// Items after `after` (by `key`, which orders `items`), at most `limit`, and the next cursor.
pub fn slice<T, K: PartialOrd>(
    items: Vec<T>,
    after: Option<&K>,
    limit: u32,
    key: impl Fn(&T) -> K,
) -> (Vec<T>, Option<K>) {
    let mut rest: Vec<T> = items.into_iter().filter(|item| after.is_none_or(|a| key(item) > *a)).collect();
    let more = rest.len() > limit as usize;
    rest.truncate(limit as usize);
    let next = if more { rest.last().map(&key) } else { None };
    (rest, next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_outside_the_range_are_refused() {
        assert_eq!(limit(None).ok(), Some(DEFAULT_LIMIT));
        assert_eq!(limit(Some(1000)).ok(), Some(1000));
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(1001)).is_err());
    }

    #[test]
    fn slices_page_through_everything_once() {
        let items: Vec<u32> = (1..=7).collect();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let (page, next) = slice(items.clone(), after.as_ref(), 3, |i| *i);
            seen.extend(page);
            match next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, items);
    }
}
