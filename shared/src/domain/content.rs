//! Content objects, availability and relationships: the rules, without storage.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::task::{UnknownName, string_enum};
use super::{DEFAULT_AVAILABILITY_END, DEFAULT_AVAILABILITY_START, Timestamp};

pub const DEFAULT_LANGUAGE: &str = "en-GB";
/// The built-in availability every deployment starts with (uid and external_id).
pub const ALWAYS: &str = "always";
/// `always` never ends within any date we can show.
pub const ALWAYS_END: Timestamp = Timestamp::from_micros(253_402_300_799_999_999);

string_enum!(
    ObjectType {
        Brand => "Brand",
        Season => "Season",
        Episode => "Episode",
        Movie => "Movie",
    }
);

string_enum!(
    /// One side of a relationship pair; `reverse()` is the other side.
    Relationship {
        BrandSeasons => "Brand.seasons",
        BrandMovies => "Brand.movies",
        SeasonBrands => "Season.brands",
        SeasonEpisodes => "Season.episodes",
        EpisodeSeasons => "Episode.seasons",
        MovieBrands => "Movie.brands",
    }
);

impl Relationship {
    pub fn owner(self) -> ObjectType {
        use Relationship::*;
        match self {
            BrandSeasons | BrandMovies => ObjectType::Brand,
            SeasonBrands | SeasonEpisodes => ObjectType::Season,
            EpisodeSeasons => ObjectType::Episode,
            MovieBrands => ObjectType::Movie,
        }
    }

    pub fn target(self) -> ObjectType {
        self.reverse().owner()
    }

    pub fn reverse(self) -> Relationship {
        use Relationship::*;
        match self {
            BrandSeasons => SeasonBrands,
            SeasonBrands => BrandSeasons,
            BrandMovies => MovieBrands,
            MovieBrands => BrandMovies,
            SeasonEpisodes => EpisodeSeasons,
            EpisodeSeasons => SeasonEpisodes,
        }
    }

    /// The GraphQL field name: `seasons`, `brands`, ...
    pub fn field(self) -> &'static str {
        let full = self.as_str();
        full.split_once('.').map_or(full, |(_, field)| field)
    }

    pub fn of(owner: ObjectType, field: &str) -> Option<Relationship> {
        Relationship::ALL
            .iter()
            .copied()
            .find(|r| r.owner() == owner && r.field() == field)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AvailabilityStatus {
    Active,
    Future,
    Expired,
    Unavailable,
}

/// An availability's time window, as copied onto each object linked to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Window {
    /// `time_window_status` of DESIGN.md §2.
    pub fn status_at(&self, t: Timestamp) -> AvailabilityStatus {
        if t < self.start {
            AvailabilityStatus::Future
        } else if t >= self.end {
            AvailabilityStatus::Expired
        } else {
            AvailabilityStatus::Active
        }
    }
}

/// ACTIVE if any window is active, else FUTURE if any is future, else EXPIRED if any expired,
/// else UNAVAILABLE.
pub fn object_status<'a>(
    windows: impl IntoIterator<Item = &'a Window>,
    t: Timestamp,
) -> AvailabilityStatus {
    let mut best = AvailabilityStatus::Unavailable;
    for w in windows {
        match w.status_at(t) {
            AvailabilityStatus::Active => return AvailabilityStatus::Active,
            AvailabilityStatus::Future => best = AvailabilityStatus::Future,
            AvailabilityStatus::Expired if best == AvailabilityStatus::Unavailable => {
                best = AvailabilityStatus::Expired
            }
            _ => {}
        }
    }
    best
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Translation {
    pub language: String,
    pub title: Option<String>,
    pub synopsis: Option<String>,
}

/// A window copied from an availability onto an object by a background task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LinkedWindow {
    pub availability_uid: String,
    pub window: Window,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentObject {
    pub uid: String,
    pub object_type: ObjectType,
    pub external_id: Option<String>,
    pub slug: Option<String>,
    /// Sorted by language; never empty while the object exists.
    pub translations: Vec<Translation>,
    /// The availabilities the client linked: the source of truth, written by the mutation.
    pub declared_availability: Vec<String>,
    /// Derived by tasks from `declared_availability`: what reads show and filter on.
    pub windows: Vec<LinkedWindow>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    /// Set by the delete mutation; `post_delete` cleans up and then removes the item.
    pub deleted: bool,
    /// Optimistic concurrency: every write is conditional on the version it read.
    pub version: u64,
}

impl ContentObject {
    /// A new object at version 1: no translation yet, nothing linked, nothing derived.
    pub fn new(uid: String, object_type: ObjectType, now: Timestamp) -> Self {
        ContentObject {
            uid,
            object_type,
            external_id: None,
            slug: None,
            translations: Vec::new(),
            declared_availability: Vec::new(),
            windows: Vec::new(),
            created_at: now,
            updated_at: now,
            deleted: false,
            version: 1,
        }
    }

    /// A new object linked to `availability`, as its `post_create` leaves it (for fixtures
    /// and benchmarks that need many linked objects fast).
    pub fn linked(
        uid: String,
        object_type: ObjectType,
        availability: &Availability,
        now: Timestamp,
    ) -> Self {
        let mut object = ContentObject::new(uid, object_type, now);
        object.translation_mut(DEFAULT_LANGUAGE).title = Some("linked".to_owned());
        object.declared_availability = vec![availability.uid.clone()];
        object.windows = vec![LinkedWindow {
            availability_uid: availability.uid.clone(),
            window: availability.window,
        }];
        object
    }
    pub fn translation(&self, language: &str) -> Option<&Translation> {
        self.translations.iter().find(|t| t.language == language)
    }

    pub fn translation_mut(&mut self, language: &str) -> &mut Translation {
        let at = match self
            .translations
            .binary_search_by(|t| t.language.as_str().cmp(language))
        {
            Ok(at) => at,
            Err(at) => {
                self.translations.insert(
                    at,
                    Translation {
                        language: language.to_owned(),
                        title: None,
                        synopsis: None,
                    },
                );
                at
            }
        };
        &mut self.translations[at]
    }

    /// Deletes the object, or with `language` only that translation; the last translation
    /// takes the object with it. `None` if the object has no such translation.
    pub fn apply_delete(&mut self, language: Option<&str>) -> Option<Deletion> {
        if let Some(language) = language {
            self.translation(language)?;
            self.translations.retain(|t| t.language != language);
            if !self.translations.is_empty() {
                return Some(Deletion::Translation);
            }
        }
        self.deleted = true;
        Some(Deletion::Object {
            released_external_id: self.external_id.take(),
        })
    }

    pub fn status_at(&self, t: Timestamp) -> AvailabilityStatus {
        object_status(self.windows.iter().map(|w| &w.window), t)
    }

    pub fn is_visible(&self, t: Timestamp, ignore_availability: bool) -> bool {
        !self.deleted && (ignore_availability || self.status_at(t) == AvailabilityStatus::Active)
    }
}

/// What `apply_delete` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deletion {
    /// The object is now a tombstone for `post_delete`; its external id is free again.
    Object {
        released_external_id: Option<String>,
    },
    /// Only a translation went; the object lives on.
    Translation,
}

impl Deletion {
    /// The task that follows: `post_delete` cleans up after a deleted object, `post_update`
    /// after a lost translation.
    pub fn task_type(&self) -> super::TaskType {
        match self {
            Deletion::Object { .. } => super::TaskType::PostDelete,
            Deletion::Translation => super::TaskType::PostUpdate,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Availability {
    pub uid: String,
    pub external_id: Option<String>,
    pub title: Option<String>,
    pub slug: Option<String>,
    pub window: Window,
    pub timezone: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub version: u64,
}

impl Availability {
    pub fn always() -> Self {
        Availability {
            uid: ALWAYS.to_owned(),
            external_id: Some(ALWAYS.to_owned()),
            title: Some("Always".to_owned()),
            slug: Some(ALWAYS.to_owned()),
            window: Window {
                start: DEFAULT_AVAILABILITY_START,
                end: ALWAYS_END,
            },
            timezone: Some("UTC".to_owned()),
            created_at: DEFAULT_AVAILABILITY_START,
            updated_at: DEFAULT_AVAILABILITY_START,
            version: 0,
        }
    }

    pub fn default_window(start: Option<Timestamp>, end: Option<Timestamp>) -> Window {
        Window {
            start: start.unwrap_or(DEFAULT_AVAILABILITY_START),
            end: end.unwrap_or(DEFAULT_AVAILABILITY_END),
        }
    }
}

pub fn new_uid() -> String {
    ulid::Ulid::generate().to_string()
}

impl FromStr for AvailabilityStatus {
    type Err = UnknownName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ACTIVE" => Ok(Self::Active),
            "FUTURE" => Ok(Self::Future),
            "EXPIRED" => Ok(Self::Expired),
            "UNAVAILABLE" => Ok(Self::Unavailable),
            other => Err(UnknownName(other.to_owned())),
        }
    }
}

impl fmt::Display for AvailabilityStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Active => "ACTIVE",
            Self::Future => "FUTURE",
            Self::Expired => "EXPIRED",
            Self::Unavailable => "UNAVAILABLE",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(start: i64, end: i64) -> Window {
        Window {
            start: Timestamp::from_secs(start),
            end: Timestamp::from_secs(end),
        }
    }

    #[test]
    fn window_status_boundaries() {
        let win = w(10, 20);
        assert_eq!(
            win.status_at(Timestamp::from_secs(9)),
            AvailabilityStatus::Future
        );
        assert_eq!(
            win.status_at(Timestamp::from_secs(10)),
            AvailabilityStatus::Active
        );
        assert_eq!(
            win.status_at(Timestamp::from_secs(20)),
            AvailabilityStatus::Expired
        );
    }

    #[test]
    fn object_status_prefers_active_then_future_then_expired() {
        let t = Timestamp::from_secs(15);
        assert_eq!(object_status([], t), AvailabilityStatus::Unavailable);
        assert_eq!(object_status(&[w(0, 5)], t), AvailabilityStatus::Expired);
        assert_eq!(
            object_status(&[w(0, 5), w(20, 30)], t),
            AvailabilityStatus::Future
        );
        assert_eq!(
            object_status(&[w(0, 5), w(20, 30), w(10, 20)], t),
            AvailabilityStatus::Active
        );
    }

    #[test]
    fn relationships_pair_up() {
        for r in Relationship::ALL {
            assert_eq!(r.reverse().reverse(), *r);
            assert_eq!(r.reverse().target(), r.owner());
            assert_eq!(Relationship::of(r.owner(), r.field()), Some(*r));
        }
        assert_eq!(
            Relationship::of(ObjectType::Season, "episodes"),
            Some(Relationship::SeasonEpisodes)
        );
        assert_eq!(Relationship::of(ObjectType::Movie, "episodes"), None);
    }

    #[test]
    fn always_is_active_now() {
        assert_eq!(
            Availability::always().window.status_at(Timestamp::now()),
            AvailabilityStatus::Active
        );
        assert_eq!(ALWAYS_END.to_string(), "9999-12-31T23:59:59.999999+00:00");
    }
}
