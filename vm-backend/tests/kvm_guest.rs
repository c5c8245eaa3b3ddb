//! Real KVM tests with hand-assembled test guests (issue 8).
//!
//! This host's KVM (KVM-PVM) runs real-mode and 32-bit protected-mode code
//! but no stock Linux kernel, so these guests exercise the VMM's own paths:
//! port IO to the 8250, the in-kernel PIC and an irqfd delivering the
//! UART's interrupt, MMIO exits dispatched to a virtio-mmio transport, the
//! virtio handshake and a virtqueue round trip, and the i8042 reset that
//! stops the VM.

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use vessel_vm::devices::virtio::rng::Rng;
use vessel_vm::engine::kvm::device_manager::DeviceManager;
use vessel_vm::engine::kvm::machine::Machine;
use vessel_vm::engine::kvm::vcpu::VcpuStop;
use vm_memory::{Bytes, GuestAddress};

fn kvm_usable() -> bool {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => true,
        Err(e) => {
            eprintln!("skipping: /dev/kvm cannot be opened: {e}");
            false
        }
    }
}

#[derive(Clone, Default)]
struct Sink(Arc<Mutex<Vec<u8>>>);
impl Write for Sink {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A tiny x86 assembler: just the instructions the test guests use.
#[derive(Default)]
struct Asm(Vec<u8>);
impl Asm {
    fn b(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn here(&self) -> usize {
        self.0.len()
    }
    /// `mov al, imm8; out imm8, al`
    fn out_imm(&mut self, port: u8, v: u8) -> &mut Self {
        self.b(&[0xb0, v, 0xe6, port])
    }
    /// `mov dx, port` (16-bit code) and `mov al, v; out dx, al`
    fn out16(&mut self, port: u16, v: u8) -> &mut Self {
        let p = port.to_le_bytes();
        self.b(&[0xba, p[0], p[1], 0xb0, v, 0xee])
    }
    /// 32-bit code: `mov dx, port; out dx, al` (operand-size prefix for dx).
    fn out32_al(&mut self, port: u16) -> &mut Self {
        let p = port.to_le_bytes();
        self.b(&[0x66, 0xba, p[0], p[1], 0xee])
    }
    /// 32-bit code: `mov dword [addr], imm32`.
    fn store32(&mut self, addr: u32, v: u32) -> &mut Self {
        self.b(&[0xc7, 0x05])
            .b(&addr.to_le_bytes())
            .b(&v.to_le_bytes())
    }
    /// 32-bit code: `mov eax, [addr]`.
    fn load32(&mut self, addr: u32) -> &mut Self {
        self.b(&[0xa1]).b(&addr.to_le_bytes())
    }
}

const CODE: u64 = 0x1000;

/// Runs one vCPU until the guest resets through the i8042 (or 10 s pass);
/// returns how it stopped and the serial output.
fn run_guest(
    m: Machine,
    devices: DeviceManager,
    setup: impl FnOnce(&mut kvm_ioctls::VcpuFd),
    sink: Sink,
) -> (VcpuStop, Vec<u8>, u64) {
    let mut vcpu = m.create_vcpu(0, &devices).unwrap();
    setup(&mut vcpu.fd);
    let running = m.start(vec![vcpu], |_| {}).unwrap();
    let reset = m.wait_exit(Some(Duration::from_secs(10)));
    let mut outcomes = running.stop();
    let (vcpu, result) = outcomes.pop().expect("the vCPU thread returned");
    let out = sink.0.lock().unwrap().clone();
    assert!(
        reset,
        "guest did not reset within 10 s; serial so far: {:?}",
        String::from_utf8_lossy(&out)
    );
    // Nothing else on the machine owns these; drop them explicitly so the
    // VM's fds close before the next test.
    drop(devices);
    (result.unwrap(), out, vcpu.exits)
}

fn real_mode(fd: &mut kvm_ioctls::VcpuFd) {
    let mut sregs = fd.get_sregs().unwrap();
    for s in [&mut sregs.cs, &mut sregs.ds, &mut sregs.es, &mut sregs.ss] {
        s.base = 0;
        s.selector = 0;
    }
    fd.set_sregs(&sregs).unwrap();
    let mut regs = fd.get_regs().unwrap();
    regs.rip = CODE;
    regs.rsp = 0x7000;
    regs.rflags = 2;
    fd.set_regs(&regs).unwrap();
}

fn protected_mode(fd: &mut kvm_ioctls::VcpuFd) {
    let mut sregs = fd.get_sregs().unwrap();
    let seg = |selector: u16, type_: u8| kvm_bindings::kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_,
        present: 1,
        dpl: 0,
        db: 1,
        s: 1,
        l: 0,
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    };
    sregs.cs = seg(0x08, 0xb);
    let data = seg(0x10, 0x3);
    (sregs.ds, sregs.es, sregs.ss, sregs.fs, sregs.gs) = (data, data, data, data, data);
    sregs.cr0 |= 1; // PE
    fd.set_sregs(&sregs).unwrap();
    let mut regs = fd.get_regs().unwrap();
    regs.rip = CODE;
    regs.rsp = 0x7000;
    regs.rflags = 2;
    fd.set_regs(&regs).unwrap();
}

#[test]
fn kvm_real_mode_serial_and_irqfd_interrupt() {
    if !kvm_usable() {
        return;
    }
    let sink = Sink::default();
    let m = Machine::new(64 << 20).unwrap();
    let mut devices = DeviceManager::new();
    devices.add_serial(&m, Box::new(sink.clone())).unwrap();
    devices.add_i8042(&m).unwrap();

    // The guest: program the PIC (IRQs at vectors 8..15, only IRQ4 open),
    // point vector 0x0c at the handler, enable the UART's "transmitter
    // empty" interrupt and send 'R' (raising IRQ4 through the irqfd while
    // interrupts are still off), then sti and halt until the handler ran,
    // print 'D' and reset through the i8042.
    let mut a = Asm::default();
    a.b(&[0xfa]); // cli
    a.out_imm(0x20, 0x11)
        .out_imm(0x21, 0x08)
        .out_imm(0x21, 0x04)
        .out_imm(0x21, 0x01)
        .out_imm(0x21, 0xef);
    let handler_fixup = a.here() + 4;
    a.b(&[0xc7, 0x06, 0x30, 0x00, 0, 0]); // mov word [0x30], handler
    a.b(&[0xc7, 0x06, 0x32, 0x00, 0, 0]); // mov word [0x32], 0 (segment)
    a.out16(0x3f9, 0x02); // IER: THR empty
    a.out16(0x3f8, b'R');
    a.b(&[0xfb]); // sti
    let wait = a.here();
    a.b(&[0xf4]); // hlt
    a.b(&[0x80, 0x3e, 0x00, 0x06, 0x01]); // cmp byte [0x600], 1
    let back = (wait as isize - (a.here() as isize + 2)) as i8;
    a.b(&[0x75, back as u8]); // jne wait
    a.out16(0x3f8, b'D');
    a.out_imm(0x64, 0xfe); // i8042: pulse reset
    let spin = a.here();
    a.b(&[0xeb, (spin as isize - (spin as isize + 2)) as u8]); // jmp $
    let handler = a.here() as u16 + CODE as u16;
    a.b(&[0x50, 0x52]); // push ax; push dx
    a.out16(0x3f9, 0x00); // IER off: writing THR again must not re-raise
    a.out16(0x3f8, b'I');
    a.b(&[0xc6, 0x06, 0x00, 0x06, 0x01]); // mov byte [0x600], 1
    a.out_imm(0x20, 0x20); // EOI
    a.b(&[0x5a, 0x58, 0xcf]); // pop dx; pop ax; iret
    a.0[handler_fixup..handler_fixup + 2].copy_from_slice(&handler.to_le_bytes());
    m.mem.write_slice(&a.0, GuestAddress(CODE)).unwrap();

    let (stop, out, exits) = run_guest(m, devices, real_mode, sink);
    assert_eq!(stop, VcpuStop::Stopped);
    assert_eq!(String::from_utf8_lossy(&out), "RID", "serial output");
    // The PIC's ports are handled in the kernel; the UART's five writes and
    // the i8042's one come to the VMM.
    assert!(exits >= 6, "port IO went through the VMM ({exits} exits)");
}

#[test]
fn kvm_protected_mode_virtio_mmio_round_trip() {
    if !kvm_usable() {
        return;
    }
    use virtio_bindings::bindings::virtio_mmio as reg;
    let sink = Sink::default();
    let m = Machine::new(64 << 20).unwrap();
    let mut devices = DeviceManager::new();
    devices.add_serial(&m, Box::new(sink.clone())).unwrap();
    devices.add_i8042(&m).unwrap();
    let (slot, transport) = devices.add_virtio(&m, Box::new(Rng::new())).unwrap();
    assert_eq!((slot.addr, slot.irq), (0xd000_0000, 5));
    let base = slot.addr as u32;

    // The driver's side in guest memory: one 32-byte writable buffer at
    // 0x20000 offered on a 16-entry queue (descriptors 0x10000, avail
    // 0x11000, used 0x12000).
    let (desc, avail, used, buf) = (0x1_0000u64, 0x1_1000u64, 0x1_2000u64, 0x2_0000u64);
    let w = 2u16; // VRING_DESC_F_WRITE
    m.mem.write_obj(buf, GuestAddress(desc)).unwrap();
    m.mem.write_obj(32u32, GuestAddress(desc + 8)).unwrap();
    m.mem.write_obj(w, GuestAddress(desc + 12)).unwrap();
    m.mem.write_obj(0u16, GuestAddress(avail + 4)).unwrap(); // ring[0] = head 0
    m.mem.write_obj(1u16, GuestAddress(avail + 2)).unwrap(); // idx = 1

    let mut a = Asm::default();
    // Read the magic value and an unclaimed address in the MMIO gap; send
    // the low byte of each to the serial port.
    a.load32(base + reg::VIRTIO_MMIO_MAGIC_VALUE)
        .out32_al(0x3f8);
    a.load32(0xc000_0000).out32_al(0x3f8);
    a.load32(base + reg::VIRTIO_MMIO_DEVICE_ID).out32_al(0x3f8);
    // The virtio 1.x handshake.
    a.store32(base + reg::VIRTIO_MMIO_STATUS, 3);
    a.store32(base + reg::VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    a.store32(base + reg::VIRTIO_MMIO_DRIVER_FEATURES, 1); // VERSION_1
    a.store32(base + reg::VIRTIO_MMIO_STATUS, 0xb);
    a.load32(base + reg::VIRTIO_MMIO_STATUS).out32_al(0x3f8);
    a.store32(base + reg::VIRTIO_MMIO_QUEUE_SEL, 0);
    a.store32(base + reg::VIRTIO_MMIO_QUEUE_NUM, 16);
    a.store32(base + reg::VIRTIO_MMIO_QUEUE_DESC_LOW, desc as u32);
    a.store32(base + reg::VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail as u32);
    a.store32(base + reg::VIRTIO_MMIO_QUEUE_USED_LOW, used as u32);
    a.store32(base + reg::VIRTIO_MMIO_QUEUE_READY, 1);
    a.store32(base + reg::VIRTIO_MMIO_STATUS, 0xf);
    a.store32(base + reg::VIRTIO_MMIO_QUEUE_NOTIFY, 0);
    // Interrupt status, used index and used length back to the serial.
    a.load32(base + reg::VIRTIO_MMIO_INTERRUPT_STATUS)
        .out32_al(0x3f8);
    a.load32(used as u32 + 2).out32_al(0x3f8);
    a.load32(used as u32 + 8).out32_al(0x3f8);
    a.store32(base + reg::VIRTIO_MMIO_INTERRUPT_ACK, 1);
    a.load32(base + reg::VIRTIO_MMIO_INTERRUPT_STATUS)
        .out32_al(0x3f8);
    a.out_imm(0x64, 0xfe);
    a.b(&[0xeb, 0xfe]);
    m.mem.write_slice(&a.0, GuestAddress(CODE)).unwrap();
    let mem = m.mem.clone();

    let (stop, out, _) = run_guest(m, devices, protected_mode, sink);
    assert_eq!(stop, VcpuStop::Stopped);
    // 'v' of "virt", 0xff from the unclaimed gap, device id 4, status with
    // FEATURES_OK, interrupt status 1, used idx 1, used len 32, status 0
    // after the ack.
    assert_eq!(out, vec![b'v', 0xff, 4, 0xb, 1, 1, 32, 0]);
    assert!(transport.lock().unwrap().is_active());
    let mut random = [0u8; 32];
    mem.read_slice(&mut random, GuestAddress(buf)).unwrap();
    assert!(
        random.iter().any(|&b| b != 0),
        "the device filled the buffer"
    );
}

#[test]
fn kvm_second_vcpu_started_by_init_sipi() {
    if !kvm_usable() {
        return;
    }
    let sink = Sink::default();
    let m = Machine::new(64 << 20).unwrap();
    let mut devices = DeviceManager::new();
    devices.add_serial(&m, Box::new(sink.clone())).unwrap();
    devices.add_i8042(&m).unwrap();

    // vCPU 1 waits for a start-up IPI (KVM's in-kernel LAPIC puts every
    // vCPU but 0 in wait-for-SIPI). Its code, at 0x2000 (SIPI vector 2),
    // in real mode: print 'A', set the flag at 0x600, halt.
    let mut ap = Asm::default();
    ap.out16(0x3f8, b'A');
    ap.b(&[0xc6, 0x06, 0x00, 0x06, 0x01]); // mov byte [0x600], 1
    ap.b(&[0xfa, 0xf4, 0xeb, 0xfd]); // cli; hlt; jmp hlt
    m.mem.write_slice(&ap.0, GuestAddress(0x2000)).unwrap();

    // vCPU 0, in 32-bit protected mode: enable its LAPIC, send INIT then
    // SIPI to APIC id 1, wait for the flag, print 'B' and reset.
    let mut a = Asm::default();
    a.store32(0xfee0_00f0, 0x1ff); // spurious vector register: enabled
    a.store32(0xfee0_0310, 1 << 24); // ICR high: destination APIC id 1
    a.store32(0xfee0_0300, 0x4500); // INIT, assert
    a.store32(0xfee0_0300, 0x4602); // start-up, vector 2 (0x2000)
    let wait = a.here();
    a.b(&[0x80, 0x3d, 0x00, 0x06, 0x00, 0x00, 0x01]); // cmp byte [0x600], 1
    let back = (wait as isize - (a.here() as isize + 2)) as i8;
    a.b(&[0x75, back as u8]); // jne wait
    a.b(&[0xb0, b'B']).out32_al(0x3f8);
    a.out_imm(0x64, 0xfe);
    a.b(&[0xeb, 0xfe]);
    m.mem.write_slice(&a.0, GuestAddress(CODE)).unwrap();

    let mut bsp = m.create_vcpu(0, &devices).unwrap();
    protected_mode(&mut bsp.fd);
    let ap_vcpu = m.create_vcpu(1, &devices).unwrap();
    let running = m.start(vec![bsp, ap_vcpu], |_| {}).unwrap();
    let reset = m.wait_exit(Some(Duration::from_secs(10)));
    let outcomes = running.stop();
    let out = sink.0.lock().unwrap().clone();
    assert!(
        reset,
        "no reset; serial: {:?}",
        String::from_utf8_lossy(&out)
    );
    assert_eq!(outcomes.len(), 2);
    for (vcpu, r) in outcomes {
        assert_eq!(r.unwrap(), VcpuStop::Stopped, "vCPU {}", vcpu.id);
    }
    assert_eq!(String::from_utf8_lossy(&out), "AB");
}
