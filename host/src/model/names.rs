//! Names and addresses: what a function, a namespace, a stream and a Kafka topic may be called,
//! and which streams a subscription follows. One check each, wherever a name comes from (a
//! deploy spec, a guest's call, the REST API, GraphQL).

const MAX_STREAM_NAME: usize = 200;

/// Function names are used in URLs, logs and metrics labels, so they are kept plain.
pub fn validate_name(name: &str) -> Result<(), String> {
    let valid = (1..=63).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "invalid function name `{name}`: use 1-63 lowercase letters, digits and dashes, starting with a letter"
        ))
    }
}

/// The one check of a namespace and stream name, wherever they come from (a guest's address,
/// the REST API, GraphQL).
pub fn validate_address(namespace: &str, stream: &str) -> Result<(), String> {
    validate_stream_name(stream)?;
    validate_namespace(namespace)
}

pub fn validate_namespace(namespace: &str) -> Result<(), String> {
    validate_name(namespace).map_err(|_| {
        format!("invalid namespace `{namespace}`: a namespace is a function name (1-63 lowercase letters, digits and dashes)")
    })
}

/// Stream names: 1-200 ASCII letters, digits and `-_.:@`.
pub fn validate_stream_name(stream: &str) -> Result<(), String> {
    let valid = (1..=MAX_STREAM_NAME).contains(&stream.len())
        && stream.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:@".contains(&b));
    if valid {
        Ok(())
    } else {
        Err(format!("invalid stream name `{stream}`: use 1-{MAX_STREAM_NAME} ASCII letters, digits and `-_.:@`"))
    }
}

/// Kafka's own topics: the broker refuses records for them (`INVALID_TOPIC_EXCEPTION`, which
/// no retry can change), and consuming them is no business of a function.
const INTERNAL_TOPICS: &[&str] =
    &["__consumer_offsets", "__transaction_state", "__share_group_state", "__cluster_metadata"];

/// Kafka's own rule for topic names: 1-249 of `a-zA-Z0-9._-`, not `.` or `..`; and none of
/// Kafka's internal topics.
pub fn validate_topic(topic: &str) -> Result<(), String> {
    if INTERNAL_TOPICS.contains(&topic) {
        return Err(format!("`{topic}` is one of Kafka's internal topics"));
    }
    let valid = (1..=249).contains(&topic.len())
        && topic.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && topic != "."
        && topic != "..";
    if valid { Ok(()) } else { Err(format!("invalid Kafka topic `{topic}`: use 1-249 of `a-zA-Z0-9._-`")) }
}

/// Which streams a subscription follows, within one namespace.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StreamFilter {
    Stream(String),
    Prefix(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_name("hello").is_ok());
        assert!(validate_name("bank-account2").is_ok());
        for bad in ["", "Hello", "1abc", "a_b", "a/b", "trailing-", &"x".repeat(64)] {
            assert!(validate_name(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn stream_names_and_addresses() {
        assert!(validate_stream_name("account-1:a@b.c_d").is_ok());
        for bad in ["", "a b", "a/b", &"x".repeat(201)] {
            assert!(validate_stream_name(bad).is_err(), "{bad:?} should be rejected");
        }
        assert!(validate_address("bank", "account-1").is_ok());
        assert!(validate_address("Bank", "account-1").unwrap_err().contains("invalid namespace"));
        assert!(validate_topic("orders.v1").is_ok());
        assert!(validate_topic("__consumer_offsets").unwrap_err().contains("internal"));
    }
}
