//! The in-memory store: users and groups behind one read-write lock.
//!
//! One lock keeps every write atomic across the collections (a deleted
//! user leaves its groups in the same step) and costs little: a write holds
//! it for microseconds, and responses are rendered from shared snapshots
//! (`Arc<Resource>`) after it is released.
//!
//! Resources are kept in creation order (a sequence number), so that paging
//! is stable. `userName`, the group `displayName` and `externalId` are
//! indexed, so the lookup every provisioning client makes first
//! (`userName eq "…"`) does not scan the collection.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use chrono::{SecondsFormat, Utc};
use parking_lot::RwLock;
use serde_json::{json, Map, Value};

use crate::error::ScimError;
use crate::filter::{self, AttrRef, Container, Expr, Op, Subject};
use crate::resource::check_invariants;
use crate::schema::{Kind, Mutability};

/// A stored resource. Immutable once stored: a write stores a new one.
#[derive(Debug, Clone)]
pub(crate) struct Resource {
    pub(crate) id: String,
    seq: u64,
    version: u64,
    created: String,
    last_modified: String,
    /// Core attributes and `externalId` under their canonical names, and
    /// each extension's attributes in an object under its URN.
    pub(crate) attrs: Map<String, Value>,
}

impl Resource {
    /// The version as an entity tag (`meta.version`, `ETag`).
    pub(crate) fn etag(&self) -> String {
        format!("W/\"{}\"", self.version)
    }

    /// `meta`, without `location` (which depends on the base URL).
    pub(crate) fn meta(&self, kind: Kind) -> Value {
        json!({
            "resourceType": kind.name(),
            "created": self.created,
            "lastModified": self.last_modified,
            "version": self.etag(),
        })
    }

    fn name_key(&self, kind: Kind) -> Option<String> {
        self.attrs
            .get(kind.name_attribute())
            .and_then(Value::as_str)
            .map(|name| filter::fold(name).into_owned())
    }

    fn external_id(&self) -> Option<&str> {
        self.attrs.get("externalId").and_then(Value::as_str)
    }

    fn display_name(&self, kind: Kind) -> Option<&str> {
        let get = |name| self.attrs.get(name).and_then(Value::as_str);
        match kind {
            Kind::User => get("displayName").or_else(|| get("userName")),
            Kind::Group => get("displayName"),
        }
    }

    /// The ids a group lists as members.
    fn member_ids(&self) -> impl Iterator<Item = &str> {
        self.attrs
            .get("members")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|m| m.get("value").and_then(Value::as_str))
    }

    #[cfg(test)]
    pub(crate) fn for_tests(id: &str, attrs: Map<String, Value>) -> Self {
        Resource {
            id: id.to_owned(),
            seq: 0,
            version: 1,
            created: "2024-01-02T03:04:05.678Z".to_owned(),
            last_modified: "2024-01-02T03:04:05.678Z".to_owned(),
            attrs,
        }
    }
}

/// A group a user belongs to, for `User.groups`.
#[derive(Debug, Clone)]
pub(crate) struct GroupRef {
    pub(crate) id: String,
    pub(crate) display: Option<String>,
}

/// A resource as read, with the groups of a user.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub(crate) kind: Kind,
    pub(crate) resource: Arc<Resource>,
    pub(crate) groups: Vec<GroupRef>,
}

/// A page of a query.
#[derive(Debug)]
pub(crate) struct Page {
    /// Every match, whatever the page.
    pub(crate) total: usize,
    pub(crate) items: Vec<Snapshot>,
}

#[derive(Debug, Default)]
struct Collection {
    by_seq: BTreeMap<u64, Arc<Resource>>,
    by_id: HashMap<String, u64>,
    /// Folded `userName` (users) or `displayName` (groups) → resources.
    names: HashMap<String, BTreeSet<u64>>,
    external_ids: HashMap<String, BTreeSet<u64>>,
}

impl Collection {
    fn get(&self, id: &str) -> Option<&Arc<Resource>> {
        self.by_id.get(id).and_then(|seq| self.by_seq.get(seq))
    }

    fn insert(&mut self, kind: Kind, resource: Arc<Resource>) {
        if let Some(name) = resource.name_key(kind) {
            self.names.entry(name).or_default().insert(resource.seq);
        }
        if let Some(external_id) = resource.external_id() {
            self.external_ids
                .entry(external_id.to_owned())
                .or_default()
                .insert(resource.seq);
        }
        self.by_id.insert(resource.id.clone(), resource.seq);
        self.by_seq.insert(resource.seq, resource);
    }

    fn remove(&mut self, kind: Kind, seq: u64) -> Option<Arc<Resource>> {
        let resource = self.by_seq.remove(&seq)?;
        self.by_id.remove(&resource.id);
        let unindex = |index: &mut HashMap<String, BTreeSet<u64>>, key: &str| {
            if let Some(set) = index.get_mut(key) {
                set.remove(&seq);
                if set.is_empty() {
                    index.remove(key);
                }
            }
        };
        if let Some(name) = resource.name_key(kind) {
            unindex(&mut self.names, &name);
        }
        if let Some(external_id) = resource.external_id() {
            unindex(&mut self.external_ids, external_id);
        }
        Some(resource)
    }

    /// The resources that can match `expr`, from the indexes; `None` when
    /// the indexes cannot tell (every resource must then be evaluated).
    fn candidates(&self, kind: Kind, expr: &Expr<AttrRef>) -> Option<BTreeSet<u64>> {
        match expr {
            Expr::Compare(attr, Op::Eq, Value::String(value)) if attr.sub.is_none() => {
                let found = match (attr.container, attr.attr.name) {
                    (Container::Common, "id") => {
                        return Some(self.by_id.get(value).copied().into_iter().collect())
                    }
                    (Container::Core, "externalId") => self.external_ids.get(value),
                    (Container::Core, name) if name == kind.name_attribute() => {
                        self.names.get(filter::fold(value).as_ref())
                    }
                    _ => return None,
                };
                Some(found.cloned().unwrap_or_default())
            }
            Expr::And(a, b) => match (self.candidates(kind, a), self.candidates(kind, b)) {
                (Some(a), Some(b)) => Some(a.intersection(&b).copied().collect()),
                (a, b) => a.or(b),
            },
            Expr::Or(a, b) => {
                let mut a = self.candidates(kind, a)?;
                a.extend(self.candidates(kind, b)?);
                Some(a)
            }
            _ => None,
        }
    }
}

#[derive(Debug, Default)]
struct Inner {
    users: Collection,
    groups: Collection,
    /// Member id (user or group) → the groups listing it.
    memberships: HashMap<String, BTreeSet<u64>>,
    next_seq: u64,
    clock: u64,
    /// Group `displayName`s are unique, ignoring case (the
    /// `unique-group-names` quirk).
    unique_group_names: bool,
    /// Users may share a `userName` (the `duplicate-user-names` quirk).
    duplicate_user_names: bool,
}

impl Inner {
    fn collection(&self, kind: Kind) -> &Collection {
        match kind {
            Kind::User => &self.users,
            Kind::Group => &self.groups,
        }
    }

    fn collection_mut(&mut self, kind: Kind) -> &mut Collection {
        match kind {
            Kind::User => &mut self.users,
            Kind::Group => &mut self.groups,
        }
    }

    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn snapshot(&self, kind: Kind, resource: Arc<Resource>) -> Snapshot {
        let groups = match kind {
            Kind::User => self.groups_of(&resource.id),
            Kind::Group => Vec::new(),
        };
        Snapshot {
            kind,
            resource,
            groups,
        }
    }

    fn groups_of(&self, id: &str) -> Vec<GroupRef> {
        self.memberships
            .get(id)
            .into_iter()
            .flatten()
            .filter_map(|seq| self.groups.by_seq.get(seq))
            .map(|g| GroupRef {
                id: g.id.clone(),
                display: g.display_name(Kind::Group).map(str::to_owned),
            })
            .collect()
    }

    /// Refuses a `userName` another user holds (compared case-insensitively,
    /// as `userName` is not case-exact), and with `unique_group_names` a
    /// group `displayName` another group holds.
    fn check_unique(
        &self,
        kind: Kind,
        attrs: &Map<String, Value>,
        own: Option<u64>,
    ) -> Result<(), ScimError> {
        if kind == Kind::Group && !self.unique_group_names
            || kind == Kind::User && self.duplicate_user_names
        {
            return Ok(());
        }
        let attribute = kind.name_attribute();
        let Some(name) = attrs.get(attribute).and_then(Value::as_str) else {
            return Ok(());
        };
        let taken = self
            .collection(kind)
            .names
            .get(filter::fold(name).as_ref())
            .is_some_and(|holders| holders.iter().any(|&seq| Some(seq) != own));
        if taken {
            return Err(ScimError::uniqueness(format!(
                "{attribute} {name:?} is already taken"
            )));
        }
        Ok(())
    }

    /// Checks that every member of a group exists, keeps one entry per
    /// member, and fills the `type` and `display` a client left out.
    fn prepare_members(
        &self,
        attrs: &mut Map<String, Value>,
        own_id: Option<&str>,
    ) -> Result<(), ScimError> {
        let Some(Value::Array(members)) = attrs.get_mut("members") else {
            return Ok(());
        };
        let mut seen = HashSet::new();
        members.retain(|m| {
            m.get("value")
                .and_then(Value::as_str)
                .is_none_or(|id| seen.insert(id.to_owned()))
        });
        for member in members.iter_mut() {
            let Some(member) = member.as_object_mut() else {
                continue;
            };
            let Some(id) = member.get("value").and_then(Value::as_str) else {
                return Err(ScimError::invalid_value(
                    "every member needs a value (its id)",
                ));
            };
            if Some(id) == own_id {
                return Err(ScimError::invalid_value(
                    "a group cannot be a member of itself",
                ));
            }
            let (kind, resource) = if let Some(user) = self.users.get(id) {
                (Kind::User, user)
            } else if let Some(group) = self.groups.get(id) {
                (Kind::Group, group)
            } else {
                return Err(ScimError::invalid_value(format!(
                    "member {id:?} is neither a user nor a group"
                )));
            };
            let display = resource.display_name(kind).map(str::to_owned);
            member.entry("type").or_insert_with(|| kind.name().into());
            if let (false, Some(display)) = (member.contains_key("display"), display) {
                member.insert("display".to_owned(), display.into());
            }
        }
        Ok(())
    }

    fn index_members(&mut self, seq: u64, old: Option<&Resource>, new: Option<&Resource>) {
        let old_ids: HashSet<&str> = old.into_iter().flat_map(Resource::member_ids).collect();
        let new_ids: HashSet<&str> = new.into_iter().flat_map(Resource::member_ids).collect();
        for gone in old_ids.difference(&new_ids) {
            if let Some(groups) = self.memberships.get_mut(*gone) {
                groups.remove(&seq);
                if groups.is_empty() {
                    self.memberships.remove(*gone);
                }
            }
        }
        for added in new_ids.difference(&old_ids) {
            self.memberships
                .entry((*added).to_owned())
                .or_default()
                .insert(seq);
        }
    }

    /// Stores `attrs` as the new state of `old` (unless nothing changed).
    fn commit(
        &mut self,
        kind: Kind,
        old: Arc<Resource>,
        attrs: Map<String, Value>,
    ) -> Arc<Resource> {
        if old.attrs == attrs {
            return old;
        }
        let version = self.tick();
        let resource = Arc::new(Resource {
            id: old.id.clone(),
            seq: old.seq,
            version,
            created: old.created.clone(),
            last_modified: now(),
            attrs,
        });
        let collection = self.collection_mut(kind);
        collection.remove(kind, old.seq);
        collection.insert(kind, Arc::clone(&resource));
        if kind == Kind::Group {
            self.index_members(old.seq, Some(&old), Some(&resource));
        }
        resource
    }

    /// Takes member `id` out of every group listing it.
    fn drop_member(&mut self, id: &str) {
        let Some(groups) = self.memberships.remove(id) else {
            return;
        };
        for seq in groups {
            let Some(group) = self.groups.by_seq.get(&seq).cloned() else {
                continue;
            };
            let mut attrs = group.attrs.clone();
            if let Some(Value::Array(members)) = attrs.get_mut("members") {
                members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
                if members.is_empty() {
                    attrs.remove("members");
                }
            }
            self.commit(Kind::Group, group, attrs);
        }
    }

    fn find(&self, kind: Kind, id: &str) -> Result<Arc<Resource>, ScimError> {
        self.collection(kind)
            .get(id)
            .cloned()
            .ok_or_else(|| not_found(kind, id))
    }

    /// Checks, prepares and stores a new state for the existing `old`.
    fn update(
        &mut self,
        kind: Kind,
        old: Arc<Resource>,
        mut attrs: Map<String, Value>,
    ) -> Result<Snapshot, ScimError> {
        check_invariants(kind, &attrs)?;
        if kind == Kind::Group {
            self.prepare_members(&mut attrs, Some(&old.id))?;
        }
        self.check_unique(kind, &attrs, Some(old.seq))?;
        let resource = self.commit(kind, old, attrs);
        Ok(self.snapshot(kind, resource))
    }
}

fn now() -> String {
    Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn not_found(kind: Kind, id: &str) -> ScimError {
    ScimError::not_found(format!("no {} with id {id:?}", kind.name()))
}

/// Checks an `If-Match` header against the current version (weak
/// comparison: clients send back the `W/"…"` they read).
fn check_if_match(resource: &Resource, if_match: Option<&str>) -> Result<(), ScimError> {
    let Some(header) = if_match else {
        return Ok(());
    };
    let etag = resource.etag();
    if etag_matches(header, &etag) {
        Ok(())
    } else {
        Err(ScimError::precondition_failed(&etag))
    }
}

/// Whether a list of entity tags (`If-Match`, `If-None-Match`) names `etag`
/// or is `*`.
pub(crate) fn etag_matches(header: &str, etag: &str) -> bool {
    let weak = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    header
        .split(',')
        .any(|tag| tag.trim() == "*" || weak(tag) == weak(etag))
}

/// Users and groups in memory.
#[derive(Debug, Default)]
pub(crate) struct Store {
    inner: RwLock<Inner>,
}

impl Store {
    /// An empty store; with `unique_group_names`, a group `displayName`
    /// another group holds (ignoring case) is refused; with
    /// `duplicate_user_names`, users may share a `userName`.
    pub(crate) fn new(unique_group_names: bool, duplicate_user_names: bool) -> Self {
        Store {
            inner: RwLock::new(Inner {
                unique_group_names,
                duplicate_user_names,
                ..Inner::default()
            }),
        }
    }

    /// Stores a new resource from checked attributes.
    pub(crate) fn create(
        &self,
        kind: Kind,
        mut attrs: Map<String, Value>,
    ) -> Result<Snapshot, ScimError> {
        check_invariants(kind, &attrs)?;
        let mut inner = self.inner.write();
        if kind == Kind::Group {
            inner.prepare_members(&mut attrs, None)?;
        }
        inner.check_unique(kind, &attrs, None)?;
        inner.next_seq += 1;
        let seq = inner.next_seq;
        let version = inner.tick();
        let created = now();
        let resource = Arc::new(Resource {
            id: uuid::Uuid::new_v4().to_string(),
            seq,
            version,
            last_modified: created.clone(),
            created,
            attrs,
        });
        inner
            .collection_mut(kind)
            .insert(kind, Arc::clone(&resource));
        if kind == Kind::Group {
            inner.index_members(seq, None, Some(&resource));
        }
        Ok(inner.snapshot(kind, resource))
    }

    /// The resource `id`, if any.
    pub(crate) fn get(&self, kind: Kind, id: &str) -> Option<Snapshot> {
        let inner = self.inner.read();
        let resource = inner.collection(kind).get(id)?.clone();
        Some(inner.snapshot(kind, resource))
    }

    /// Replaces the attributes of `id` (PUT). Write-only attributes the
    /// body leaves out are kept: clients cannot read them back to resend.
    pub(crate) fn replace(
        &self,
        kind: Kind,
        id: &str,
        mut attrs: Map<String, Value>,
        if_match: Option<&str>,
    ) -> Result<Snapshot, ScimError> {
        let mut inner = self.inner.write();
        let old = inner.find(kind, id)?;
        check_if_match(&old, if_match)?;
        for attr in &kind.core().attributes {
            if attr.mutability == Mutability::WriteOnly && !attrs.contains_key(attr.name) {
                if let Some(kept) = old.attrs.get(attr.name) {
                    attrs.insert(attr.name.to_owned(), kept.clone());
                }
            }
        }
        inner.update(kind, old, attrs)
    }

    /// Applies a PATCH body to `id`, all its operations or none.
    pub(crate) fn patch(
        &self,
        kind: Kind,
        id: &str,
        body: Value,
        if_match: Option<&str>,
    ) -> Result<Snapshot, ScimError> {
        let mut inner = self.inner.write();
        let old = inner.find(kind, id)?;
        check_if_match(&old, if_match)?;
        let mut attrs = old.attrs.clone();
        crate::patch::apply(kind, &mut attrs, body)?;
        inner.update(kind, old, attrs)
    }

    /// The first half of a PATCH done as read, change, write (the
    /// `read-change-write-patch` quirk): the attributes of `id` as read now
    /// with the PATCH body applied, for [`Store::write_back`].
    pub(crate) fn read_and_change(
        &self,
        kind: Kind,
        id: &str,
        body: Value,
        if_match: Option<&str>,
    ) -> Result<Map<String, Value>, ScimError> {
        let old = self.inner.read().find(kind, id)?;
        check_if_match(&old, if_match)?;
        let mut attrs = old.attrs.clone();
        crate::patch::apply(kind, &mut attrs, body)?;
        Ok(attrs)
    }

    /// The second half: stores `attrs` as the whole new state of `id`, over
    /// whatever it holds now (no version check: the last writer wins).
    pub(crate) fn write_back(
        &self,
        kind: Kind,
        id: &str,
        attrs: Map<String, Value>,
    ) -> Result<Snapshot, ScimError> {
        let mut inner = self.inner.write();
        let current = inner.find(kind, id)?;
        inner.update(kind, current, attrs)
    }

    /// Deletes `id`, and takes it out of every group listing it.
    pub(crate) fn delete(
        &self,
        kind: Kind,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), ScimError> {
        let mut inner = self.inner.write();
        let old = inner.find(kind, id)?;
        check_if_match(&old, if_match)?;
        inner.collection_mut(kind).remove(kind, old.seq);
        if kind == Kind::Group {
            inner.index_members(old.seq, Some(&old), None);
        }
        inner.drop_member(&old.id);
        Ok(())
    }

    /// Resources of the listed types matching their filters, in order,
    /// one page of them: `start` is 1-based, at most `count` are returned.
    pub(crate) fn search(
        &self,
        targets: &[(Kind, Option<Expr<AttrRef>>)],
        start: usize,
        count: usize,
    ) -> Page {
        let inner = self.inner.read();
        let first = start.saturating_sub(1);
        let mut total = 0usize;
        let mut items = Vec::new();
        for (kind, filter) in targets {
            let kind = *kind;
            let collection = inner.collection(kind);
            let Some(filter) = filter else {
                // No filter: count without evaluating, page by skipping.
                let skip = first.saturating_sub(total);
                for resource in collection.by_seq.values().skip(skip) {
                    if items.len() >= count {
                        break;
                    }
                    items.push(inner.snapshot(kind, Arc::clone(resource)));
                }
                total += collection.by_seq.len();
                continue;
            };
            let hits: Box<dyn Iterator<Item = &Arc<Resource>>> =
                match collection.candidates(kind, filter) {
                    Some(seqs) => Box::new(
                        seqs.into_iter()
                            .filter_map(|seq| collection.by_seq.get(&seq)),
                    ),
                    None => Box::new(collection.by_seq.values()),
                };
            for resource in hits.filter(|r| filter::matches(filter, Subject::Resource(kind, r))) {
                if total >= first && items.len() < count {
                    items.push(inner.snapshot(kind, Arc::clone(resource)));
                }
                total += 1;
            }
        }
        Page { total, items }
    }

    /// How many resources of `kind` are stored.
    pub(crate) fn len(&self, kind: Kind) -> usize {
        self.inner.read().collection(kind).by_seq.len()
    }
}

#[cfg(test)]
#[path = "store_tests.rs"]
mod tests;
