//! vm mode on vessel's own monitor (`[vm] engine = "kvm"`) booting the
//! stock Debian guest kernel, on a KVM that runs it: this host's when the
//! kvm engine's probe finds it usable, otherwise a real `/dev/kvm` inside
//! an outer VM under QEMU TCG with SVM (see `vessel_tests::nested`). The
//! outer VM boots once per run of this binary; every test reads the
//! outcome of its scenario from `tests/nested/scenarios.sh`.

use vessel_tests::nested::{self, assert_scenario, Place};

#[test]
fn nested_outer_vm_gives_a_real_kvm() {
    let r = nested::run();
    if let Some(why) = &r.skipped {
        eprintln!("SKIP: {why}");
        return;
    }
    if r.place == Some(Place::Nested) {
        assert!(
            r.has("NESTED_KVM_DEV ok"),
            "no /dev/kvm in the outer VM:\n{}",
            r.tail(40)
        );
        assert!(
            r.has("NESTED_DONE"),
            "the outer VM did not finish its scenarios:\n{}",
            r.tail(40)
        );
    }
}

#[test]
fn nested_features_report_the_kvm_engine() {
    assert_scenario("features");
}

#[test]
fn nested_kvm_run_output_env_and_exit_code() {
    assert_scenario("run_output_exit");
}

#[test]
fn nested_kvm_lifecycle_exec_ps_update_kill_delete() {
    assert_scenario("lifecycle");
}

#[test]
fn nested_kvm_pause_and_resume_freeze_the_vmm() {
    assert_scenario("pause_resume");
}

#[test]
fn nested_kvm_terminal_through_the_console_socket_and_exec_tty() {
    assert_scenario("terminal");
}

#[test]
fn nested_kvm_rootfs_is_isolated_and_writable() {
    assert_scenario("rootfs_isolation");
}

#[test]
fn nested_kvm_two_vcpus() {
    assert_scenario("smp2");
}

#[test]
fn nested_kvm_network_through_the_tap() {
    assert_scenario("network");
}

#[test]
fn nested_kvm_bad_input_is_refused_and_leaves_nothing() {
    assert_scenario("bad_input");
}
