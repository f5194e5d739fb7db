//! Every DynamoDB key and index name in one place (see `docs/data-model.md`).
//!
//! Content table (`CONTENT_TABLE`), keys `pk`/`sk`, index `gsi1` on `gsi1pk`/`gsi1sk`:
//! | item | pk | sk | gsi1pk / gsi1sk |
//! |---|---|---|---|
//! | object | `OBJ#<uid>` | `OBJ` | `TYPE#<Movie…>` / `<uid>` |
//! | availability | `AV#<uid>` | `AV` | `TYPE#Availability` / `<uid>` |
//! | external id claim | `EXT#<scope>#<external_id>` | `EXT` | – |
//! | relationship edge | `OBJ#<from>` | `EDGE#<Type.field>#<to>` | – |
//! | availability link | `AV#<availability>` | `LINK#<object>` | – |
//!
//! Tasks table (`TASKS_TABLE`), key `task_id`; index `by_status` on `status`/`created_key` and
//! index `by_created` on `all`/`created_key`, `by_object` on `object_uid`/`created_key` and
//! `by_type` on `task_type`/`created_key` (`created_key` = zero-padded micros + `#` + id).

use crate::domain::{ObjectType, Relationship, TaskId, Timestamp};

pub const PK: &str = "pk";
pub const SK: &str = "sk";
pub const GSI1: &str = "gsi1";
pub const GSI1_PK: &str = "gsi1pk";
pub const GSI1_SK: &str = "gsi1sk";

pub const TASK_ID: &str = "task_id";
pub const BY_STATUS: &str = "by_status";
pub const BY_CREATED: &str = "by_created";
pub const BY_OBJECT: &str = "by_object";
pub const BY_TYPE: &str = "by_type";
pub const STATUS: &str = "status";
pub const OBJECT_UID: &str = "object_uid";
pub const TASK_TYPE: &str = "task_type";
pub const ALL: &str = "all";
pub const CREATED_KEY: &str = "created_key";
/// The one partition of the `by_created` index.
pub const ALL_TASKS: &str = "TASK";
/// DynamoDB's TTL attribute (epoch seconds).
pub const EXPIRES_AT: &str = "expires_at";

pub const OBJECT_SK: &str = "OBJ";
pub const AVAILABILITY_SK: &str = "AV";
pub const EXTERNAL_ID_SK: &str = "EXT";
pub const EDGE_PREFIX: &str = "EDGE#";
pub const LINK_PREFIX: &str = "LINK#";

pub fn object_pk(uid: &str) -> String {
    format!("OBJ#{uid}")
}

pub fn availability_pk(uid: &str) -> String {
    format!("AV#{uid}")
}

pub fn type_pk(object_type: ObjectType) -> String {
    format!("TYPE#{object_type}")
}

pub const AVAILABILITY_TYPE_PK: &str = "TYPE#Availability";

pub fn external_id_pk(scope: &str, external_id: &str) -> String {
    format!("EXT#{scope}#{external_id}")
}

pub fn edge_prefix(relationship: Option<Relationship>) -> String {
    match relationship {
        Some(r) => format!("{EDGE_PREFIX}{r}#"),
        None => EDGE_PREFIX.to_owned(),
    }
}

pub fn edge_sk(relationship: Relationship, to: &str) -> String {
    format!("{EDGE_PREFIX}{relationship}#{to}")
}

/// `EDGE#<rel>#<to>` back to its parts.
pub fn parse_edge_sk(sk: &str) -> Option<(Relationship, String)> {
    let rest = sk.strip_prefix(EDGE_PREFIX)?;
    let (relationship, to) = rest.split_once('#')?;
    Some((relationship.parse().ok()?, to.to_owned()))
}

pub fn link_sk(object_uid: &str) -> String {
    format!("{LINK_PREFIX}{object_uid}")
}

/// Sorts as creation time, then id: fixed width, so text order is time order.
pub fn created_key(created_at: Timestamp, task_id: TaskId) -> String {
    format!("{:020}#{task_id}", created_at.micros().max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_keys_round_trip() {
        let sk = edge_sk(Relationship::SeasonEpisodes, "01ABC");
        assert_eq!(sk, "EDGE#Season.episodes#01ABC");
        assert_eq!(
            parse_edge_sk(&sk),
            Some((Relationship::SeasonEpisodes, "01ABC".to_owned()))
        );
        assert!(sk.starts_with(&edge_prefix(Some(Relationship::SeasonEpisodes))));
    }

    #[test]
    fn created_keys_sort_as_time() {
        let id = TaskId::random();
        let a = created_key(Timestamp::from_secs(9), id);
        let b = created_key(Timestamp::from_secs(10), id);
        assert!(a < b);
    }
}
