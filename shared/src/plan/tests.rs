use super::*;
use crate::policy::Policy;

const STACK: &str = "patchpilot";

fn owner() -> Owner {
    Owner::new(STACK)
}

fn deployment() -> Deployment {
    Deployment {
        output_bucket: Some("patchpilot-output".into()),
        window_role_arn: Some("arn:aws:iam::123456789012:role/patchpilot-window".into()),
        default_host_management_role: None,
        promotions: Default::default(),
        promotion_errors: Default::default(),
    }
}

fn reference() -> DesiredState {
    desired_state(&Policy::reference(), &deployment())
}

/// What the account looks like after a successful apply of `d` (ids are made up).
fn applied(d: &DesiredState) -> ObservedState {
    let mut o = ObservedState::default();
    for (i, b) in d.baselines.iter().enumerate() {
        o.baselines.push(ObservedBaseline {
            id: format!("pb-{i:017}"),
            name: b.name.clone(),
            os: Some(b.os),
            marker: Some(STACK.to_string()),
            spec: Some(b.clone()),
        });
    }
    for r in &d.registrations {
        let id = o
            .baselines
            .iter()
            .find(|b| b.name == r.baseline)
            .map(|b| b.id.clone())
            .expect("registered baseline exists");
        o.registrations.push(ObservedRegistration {
            patch_group: r.patch_group.clone(),
            baseline_id: id,
            os: Some(r.os),
        });
    }
    for (i, w) in d.windows.iter().enumerate() {
        o.windows.push(ObservedWindow {
            id: format!("mw-{i:017}"),
            name: w.name.clone(),
            marker: Some(STACK.to_string()),
            spec: Some(w.clone()),
        });
    }
    let window_id = |o: &ObservedState, name: &str| {
        o.windows
            .iter()
            .find(|w| w.name == name)
            .map(|w| w.id.clone())
            .expect("window exists")
    };
    for (i, t) in d.targets.iter().enumerate() {
        let wid = window_id(&o, &t.window);
        o.targets.push(ObservedTarget {
            window_id: wid,
            id: format!("target-{i}"),
            spec: t.clone(),
        });
    }
    for (i, t) in d.tasks.iter().enumerate() {
        let wid = window_id(&o, &t.window);
        o.tasks.push(ObservedTask {
            window_id: wid,
            id: format!("task-{i}"),
            spec: t.clone(),
            document: desired::RUN_PATCH_BASELINE.to_string(),
        });
    }
    o
}

fn ops(p: &Plan) -> Vec<&'static str> {
    p.changes
        .iter()
        .map(|c| match c.change {
            Change::CreateBaseline { .. } => "create-baseline",
            Change::UpdateBaseline { .. } => "update-baseline",
            Change::DeleteBaseline { .. } => "delete-baseline",
            Change::RegisterPatchGroup { .. } => "register",
            Change::DeregisterPatchGroup { .. } => "deregister",
            Change::CreateWindow { .. } => "create-window",
            Change::UpdateWindow { .. } => "update-window",
            Change::DeleteWindow { .. } => "delete-window",
            Change::RegisterTarget { .. } => "register-target",
            Change::UpdateTarget { .. } => "update-target",
            Change::DeregisterTarget { .. } => "deregister-target",
            Change::RegisterTask { .. } => "register-task",
            Change::UpdateTask { .. } => "update-task",
            Change::DeregisterTask { .. } => "deregister-task",
        })
        .collect()
}

fn count(p: &Plan, op: &str) -> usize {
    ops(p).into_iter().filter(|o| *o == op).count()
}

#[test]
fn an_empty_account_gets_the_whole_reference_scenario_in_dependency_order() {
    let p = plan(&reference(), &ObservedState::default(), &owner());
    assert_eq!(count(&p, "create-baseline"), 12);
    assert_eq!(count(&p, "register"), 24);
    assert_eq!(count(&p, "create-window"), 2);
    assert_eq!(count(&p, "register-target"), 4);
    assert_eq!(count(&p, "register-task"), 4);
    assert_eq!(p.changes.len(), 12 + 24 + 2 + 4 + 4);
    assert!(p.conflicts.is_empty());
    // Baselines before registrations, windows before targets before tasks.
    let o = ops(&p);
    let last = |op| o.iter().rposition(|x| *x == op).expect("present");
    let first = |op| o.iter().position(|x| *x == op).expect("present");
    assert!(last("create-baseline") < first("register"));
    assert!(last("register") < first("create-window"));
    assert!(last("create-window") < first("register-target"));
    assert!(last("register-target") < first("register-task"));
    assert!(p.lines().contains(
        &"+ register patch group patch_test_0600_batch_1 → patchpilot-test-WINDOWS".to_string()
    ));
    assert!(p
        .lines()
        .iter()
        .any(|l| l.starts_with("+ window patchpilot-prod: cron(0 6 ? * SAT#3 *) Europe/Zurich")));
}

#[test]
fn with_no_drift_the_plan_is_empty() {
    let d = reference();
    let p = plan(&d, &applied(&d), &owner());
    assert!(p.is_empty(), "{p}");
    assert!(p.conflicts.is_empty());
    // 12 baselines + 24 registrations + 2 windows + 4 targets + 4 tasks
    assert_eq!(p.unchanged, 46);
    assert_eq!(p.to_string(), "no changes (46 resources up to date)");
}

#[test]
fn editing_one_field_updates_exactly_that_baseline_in_place() {
    let before = reference();
    let observed = applied(&before);
    let mut policy = Policy::reference();
    policy.environments[1].approval.approve_after_days = Some(7);
    let after = desired_state(&policy, &deployment());
    let p = plan(&after, &observed, &owner());
    // Every prod baseline whose OS can delay approval changes (5 of 6, Ubuntu cannot).
    assert_eq!(ops(&p), vec!["update-baseline"; 5]);
    let rhel = p
        .changes
        .iter()
        .find(|c| c.line.contains("patchpilot-prod-REDHAT_ENTERPRISE_LINUX"))
        .expect("rhel prod updated");
    assert!(
        rhel.line.contains("ApproveAfterDays 14 → 7"),
        "{}",
        rhel.line
    );
    match &rhel.change {
        Change::UpdateBaseline { id, .. } => {
            let existing = observed
                .baselines
                .iter()
                .find(|b| b.name == "patchpilot-prod-REDHAT_ENTERPRISE_LINUX")
                .expect("exists");
            assert_eq!(id, &existing.id, "updated in place, same id");
        }
        other => panic!("expected an update, got {other:?}"),
    }
}

#[test]
fn one_rule_filter_change_touches_one_baseline() {
    let observed = applied(&reference());
    let mut policy = Policy::reference();
    let suse = policy
        .baselines
        .iter_mut()
        .find(|b| b.os == OperatingSystem::Suse)
        .expect("suse");
    suse.rules[0]
        .filters
        .insert("SEVERITY".into(), vec!["Critical".into()]);
    let p = plan(&desired_state(&policy, &deployment()), &observed, &owner());
    assert_eq!(ops(&p), ["update-baseline", "update-baseline"]); // test and prod SUSE
    assert!(
        p.changes[0]
            .line
            .contains("SEVERITY [Critical, Important] → [Critical]"),
        "{}",
        p.changes[0].line
    );
}

#[test]
fn a_window_schedule_change_updates_only_that_window() {
    let observed = applied(&reference());
    let mut policy = Policy::reference();
    policy.environments[0].window.duration_hours = 3;
    let p = plan(&desired_state(&policy, &deployment()), &observed, &owner());
    assert_eq!(ops(&p), ["update-window"]);
    assert_eq!(
        p.changes[0].line,
        "~ window patchpilot-test: Duration 4 → 3"
    );
}

#[test]
fn a_foreign_baseline_with_a_clashing_name_is_left_alone_and_reported() {
    let d = reference();
    let mut observed = applied(&d);
    let foreign = observed
        .baselines
        .iter_mut()
        .find(|b| b.name == "patchpilot-test-WINDOWS")
        .expect("exists");
    foreign.marker = None;
    foreign.spec = None;
    let foreign_id = foreign.id.clone();
    let p = plan(&d, &observed, &owner());
    assert!(
        p.changes
            .iter()
            .all(|c| !c.line.contains("patchpilot-test-WINDOWS")),
        "{p}"
    );
    assert!(p.changes.iter().all(|c| match &c.change {
        Change::UpdateBaseline { id, .. } | Change::DeleteBaseline { id, .. } => id != &foreign_id,
        Change::DeregisterPatchGroup { baseline_id, .. } => baseline_id != &foreign_id,
        _ => true,
    }));
    assert_eq!(p.conflicts.len(), 1, "{:?}", p.conflicts);
    assert!(
        p.conflicts[0].message.contains("not this stack's")
            && p.conflicts[0].message.contains("no patchpilot:managed tag")
            && p.conflicts[0]
                .message
                .contains("tag it patchpilot:managed=patchpilot to let this stack manage it"),
        "{}",
        p.conflicts[0]
    );
    assert!(p.is_empty());
}

#[test]
fn a_group_registered_with_a_foreign_baseline_is_a_conflict_not_a_takeover() {
    let d = reference();
    let mut observed = applied(&d);
    observed.baselines.push(ObservedBaseline {
        id: "pb-foreign".into(),
        name: "corp-windows".into(),
        os: Some(OperatingSystem::Windows),
        marker: None,
        spec: None,
    });
    for r in observed.registrations.iter_mut() {
        if r.patch_group == "patch_test_0600_batch_2" && r.os == Some(OperatingSystem::Windows) {
            r.baseline_id = "pb-foreign".into();
        }
    }
    let p = plan(&d, &observed, &owner());
    assert!(p.is_empty(), "{p}");
    assert_eq!(p.conflicts.len(), 1);
    assert!(p.conflicts[0].message.contains("corp-windows"));
}

#[test]
fn removing_an_environment_removes_only_its_resources() {
    let observed = applied(&reference());
    let mut policy = Policy::reference();
    policy.environments.retain(|e| e.name != "prod");
    let p = plan(&desired_state(&policy, &deployment()), &observed, &owner());
    assert_eq!(count(&p, "deregister"), 12);
    assert_eq!(count(&p, "delete-baseline"), 6);
    assert_eq!(count(&p, "delete-window"), 1);
    assert_eq!(p.changes.len(), 19, "{p}");
    assert!(p.changes.iter().all(|c| c.line.contains("prod")), "{p}");
    // Deregistrations before the baseline deletions.
    let o = ops(&p);
    assert!(
        o.iter().rposition(|x| *x == "deregister") < o.iter().position(|x| *x == "delete-baseline")
    );
}

#[test]
fn resources_without_the_ownership_marker_are_never_deleted() {
    let mut observed = applied(&reference());
    observed.baselines.push(ObservedBaseline {
        id: "pb-old".into(),
        name: "patchpilot-stage-WINDOWS".into(),
        os: Some(OperatingSystem::Windows),
        marker: None,
        spec: None,
    });
    observed.windows.push(ObservedWindow {
        id: "mw-other".into(),
        name: "patchpilot-stage".into(),
        marker: None,
        spec: None,
    });
    let p = plan(&reference(), &observed, &owner());
    assert!(p.is_empty(), "{p}");
    assert!(p.conflicts.is_empty());
}

#[test]
fn a_foreign_target_in_our_window_is_left_alone_but_a_stale_patchpilot_one_goes() {
    let d = reference();
    let mut observed = applied(&d);
    let wid = observed.windows[0].id.clone();
    let mut foreign = observed.targets[0].spec.clone();
    foreign.name = "someone-elses-target".into();
    observed.targets.push(ObservedTarget {
        window_id: wid.clone(),
        id: "target-foreign".into(),
        spec: foreign,
    });
    let mut stale = observed.targets[0].spec.clone();
    stale.name = "patch_test_0600_batch_3".into();
    observed.targets.push(ObservedTarget {
        window_id: wid,
        id: "target-stale".into(),
        spec: stale,
    });
    let p = plan(&d, &observed, &owner());
    assert_eq!(ops(&p), ["deregister-target"]);
    assert_eq!(
        p.changes[0].line,
        "- target patch_test_0600_batch_3 in patchpilot-test: no longer in the policy"
    );
}

#[test]
fn a_per_os_target_left_from_a_promotion_goes_when_prod_is_held_again() {
    let d = reference();
    let mut observed = applied(&d);
    let wid = observed.windows[0].id.clone();
    for (id, name) in [
        ("target-os", "patch_test_0600_batch_1_UBUNTU"),
        ("target-os-2", "patch_test_0600_batch_1_AMAZON_LINUX_2"),
        // not ours: no patch group before the OS, or no OS after it
        ("target-x", "patch_test_0600_batch_1_NOT_AN_OS"),
        ("target-y", "db_UBUNTU"),
    ] {
        let mut spec = observed.targets[0].spec.clone();
        spec.name = name.into();
        observed.targets.push(ObservedTarget {
            window_id: wid.clone(),
            id: id.into(),
            spec,
        });
    }
    let p = plan(&d, &observed, &owner());
    assert_eq!(ops(&p), ["deregister-target", "deregister-target"], "{p}");
    assert!(p.lines().contains(
        &"- target patch_test_0600_batch_1_UBUNTU in patchpilot-test: no longer in the policy"
            .to_string()
    ));
}

#[test]
fn changing_the_batch_order_renames_the_tasks_and_keeps_the_baselines() {
    let observed = applied(&reference());
    let mut policy = Policy::reference();
    policy.batches.reverse();
    let p = plan(&desired_state(&policy, &deployment()), &observed, &owner());
    // Windows becomes batch 1: the group names stay, their targets now describe other
    // platforms (updated in place) and the tasks are named after the new batches.
    assert_eq!(count(&p, "update-target"), 4, "{p}");
    assert_eq!(count(&p, "register-task"), 4, "{p}");
    assert_eq!(count(&p, "deregister-task"), 4, "{p}");
    assert_eq!(p.changes.len(), 12, "{p}");
    assert!(p.lines().contains(
        &"- task patchpilot-test-batch-1-linux in patchpilot-test: no longer in the policy"
            .to_string()
    ));
}

#[test]
fn another_stacks_baseline_and_window_are_conflicts_and_untouched() {
    let d = reference();
    let mut observed = applied(&d);
    let mut other_ids = Vec::new();
    for b in observed
        .baselines
        .iter_mut()
        .filter(|b| b.name == "patchpilot-test-WINDOWS")
    {
        b.marker = Some("patchpilot-dev".into());
        b.spec = None;
        other_ids.push(b.id.clone());
    }
    for w in observed
        .windows
        .iter_mut()
        .filter(|w| w.name == "patchpilot-test")
    {
        w.marker = Some("patchpilot-dev".into());
        w.spec = None;
        other_ids.push(w.id.clone());
    }
    // Targets and tasks of another stack's window are not read.
    let test_window = other_ids[1].clone();
    observed.targets.retain(|t| t.window_id != test_window);
    observed.tasks.retain(|t| t.window_id != test_window);
    let p = plan(&d, &observed, &owner());
    // Untouched: no change names either resource, and nothing is created in their place
    // (the baseline's patch groups stay registered with it).
    assert!(
        p.changes.iter().all(|c| match &c.change {
            Change::UpdateBaseline { id, .. } | Change::DeleteBaseline { id, .. } =>
                !other_ids.contains(id),
            Change::UpdateWindow { id, .. } | Change::DeleteWindow { id, .. } =>
                !other_ids.contains(id),
            Change::DeregisterPatchGroup { baseline_id, .. } => !other_ids.contains(baseline_id),
            Change::CreateBaseline { spec } => spec.name != "patchpilot-test-WINDOWS",
            Change::CreateWindow { spec } => spec.name != "patchpilot-test",
            Change::RegisterTarget { spec, .. } => spec.window != "patchpilot-test",
            Change::RegisterTask { spec, .. } => spec.window != "patchpilot-test",
            _ => true,
        }),
        "{p}"
    );
    assert!(p.is_empty(), "{p}");
    let lines = p.lines();
    for resource in ["baseline patchpilot-test-WINDOWS", "window patchpilot-test"] {
        let line = lines
            .iter()
            .find(|l| l.starts_with(&format!("! {resource}:")))
            .unwrap_or_else(|| panic!("no conflict for {resource}: {p}"));
        assert!(
            line.contains("patchpilot stack `patchpilot-dev` (patchpilot:managed=patchpilot-dev)")
                && line.contains("patchpilot:managed=patchpilot"),
            "{line}"
        );
    }
    assert!(
        lines
            .iter()
            .all(|l| !l.starts_with("! ") || l.contains("rename the environment")),
        "{p}"
    );
    assert_eq!(p.conflicts.len(), 2, "{p}");
    // That stack, planning the same account, manages them.
    let theirs = plan(&d, &observed, &Owner::new("patchpilot-dev"));
    assert!(theirs
        .conflicts
        .iter()
        .all(|c| !c.resource.contains("patchpilot-test-WINDOWS")));
}

#[test]
fn another_stacks_resources_are_never_deleted() {
    let mut observed = applied(&reference());
    observed.baselines.push(ObservedBaseline {
        id: "pb-dev".into(),
        name: "patchpilot-stage-WINDOWS".into(),
        os: Some(OperatingSystem::Windows),
        marker: Some("patchpilot-dev".into()),
        spec: None,
    });
    observed.windows.push(ObservedWindow {
        id: "mw-dev".into(),
        name: "patchpilot-stage".into(),
        marker: Some("patchpilot-dev".into()),
        spec: None,
    });
    let p = plan(&reference(), &observed, &owner());
    assert!(p.is_empty(), "{p}");
    assert!(p.conflicts.is_empty());
}

#[test]
fn two_same_named_baselines_or_windows_of_this_stack_are_a_conflict_and_neither_changes() {
    let d = reference();
    let mut observed = applied(&d);
    let first = observed
        .baselines
        .iter()
        .find(|b| b.name == "patchpilot-test-WINDOWS")
        .cloned()
        .expect("exists");
    let mut second = first.clone();
    second.id = "pb-second".into();
    // Both drifted: neither may be updated.
    if let Some(spec) = second.spec.as_mut() {
        spec.description = "edited".into();
    }
    observed.baselines.push(second);
    let window = observed.windows[0].clone();
    let mut window2 = window.clone();
    window2.id = "mw-second".into();
    observed.windows.push(window2);
    // A policy edit that would change the Windows baseline and the window.
    let mut policy = Policy::reference();
    policy.environments[0].window.duration_hours += 1;
    let p = plan(&desired_state(&policy, &deployment()), &observed, &owner());
    let touched = |id: &str| {
        p.changes.iter().any(|c| match &c.change {
            Change::UpdateBaseline { id: i, .. }
            | Change::DeleteBaseline { id: i, .. }
            | Change::UpdateWindow { id: i, .. }
            | Change::DeleteWindow { id: i, .. } => i == id,
            Change::DeregisterPatchGroup { baseline_id, .. } => baseline_id == id,
            Change::RegisterTarget { window, .. } | Change::RegisterTask { window, .. } => {
                *window == Ref::Id(id.to_string())
            }
            Change::UpdateTarget { window_id, .. }
            | Change::DeregisterTarget { window_id, .. }
            | Change::UpdateTask { window_id, .. }
            | Change::DeregisterTask { window_id, .. } => window_id == id,
            _ => false,
        })
    };
    for id in [
        first.id.as_str(),
        "pb-second",
        window.id.as_str(),
        "mw-second",
    ] {
        assert!(!touched(id), "{id} changed: {p}");
    }
    assert!(
        p.changes.iter().all(|c| !matches!(
            &c.change,
            Change::CreateBaseline { .. } | Change::CreateWindow { .. }
        )),
        "{p}"
    );
    let baseline = p
        .conflicts
        .iter()
        .find(|c| c.resource == "baseline patchpilot-test-WINDOWS")
        .unwrap_or_else(|| panic!("no baseline conflict: {p}"));
    assert!(
        baseline.message.contains(&first.id)
            && baseline.message.contains("pb-second")
            && baseline.message.contains("patchpilot:managed=patchpilot"),
        "{baseline}"
    );
    let w = p
        .conflicts
        .iter()
        .find(|c| c.resource == "window patchpilot-test")
        .unwrap_or_else(|| panic!("no window conflict: {p}"));
    assert!(
        w.message.contains(&window.id) && w.message.contains("mw-second"),
        "{w}"
    );
}

#[test]
fn two_same_named_baselines_of_this_stack_no_longer_in_the_policy_are_not_deleted() {
    let mut observed = applied(&reference());
    for id in ["pb-a", "pb-b"] {
        observed.baselines.push(ObservedBaseline {
            id: id.into(),
            name: "patchpilot-stage-WINDOWS".into(),
            os: Some(OperatingSystem::Windows),
            marker: Some(STACK.into()),
            spec: None,
        });
    }
    let p = plan(&reference(), &observed, &owner());
    assert!(p.is_empty(), "{p}");
    assert_eq!(p.conflicts.len(), 1, "{p}");
    assert!(
        p.conflicts[0].message.contains("pb-a and pb-b"),
        "{}",
        p.conflicts[0]
    );
}
