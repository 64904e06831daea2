//! Directory changes for provisioner tests.

use hrsync_domain::{
    AppAssignment, DirectoryChange, EmployeeId, EmploymentType, LifecycleState, PersonId, Profile,
    TimeZone, Timestamp, WorkerAttributes,
};

/// A directory change for `person` (`p-<employee>`) at `version`: given
/// name and family name from `name` ("Lucy Gray"), work e-mail
/// `<first>@example.com`, assigned `apps` (each granted by `groups`).
///
/// # Panics
/// On ids or names the domain refuses (a test's mistake).
pub fn directory_change(
    employee: &str,
    name: &str,
    version: u64,
    state: LifecycleState,
    apps: &[&str],
    groups: &[&str],
) -> DirectoryChange {
    let (given, family) = name.split_once(' ').unwrap_or((name, "Tester"));
    let mut attributes = WorkerAttributes::new(given, family, EmploymentType::Employee);
    attributes.work_email = Some(format!("{}@example.com", given.to_lowercase()));
    DirectoryChange {
        person_id: PersonId::new(format!("p-{employee}")).expect("person id"),
        employee_id: EmployeeId::new(employee).expect("employee id"),
        version,
        lifecycle_state: state,
        profile: Profile {
            attributes,
            time_zone: TimeZone::new("Europe/London").expect("time zone"),
            start_at: None,
            terminate_at: None,
        },
        groups: groups.iter().map(|g| (*g).to_owned()).collect(),
        apps: apps
            .iter()
            .map(|a| AppAssignment {
                app: (*a).to_owned(),
                groups: groups.iter().map(|g| (*g).to_owned()).collect(),
            })
            .collect(),
        caused_by: vec![],
        priority: state != LifecycleState::Active && state != LifecycleState::Pending,
        changed_at: Timestamp::from_millis(1_790_000_000_000).expect("timestamp"),
    }
}
