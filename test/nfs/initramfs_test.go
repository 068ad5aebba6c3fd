//go:build linux && !nfsguest

package nfs

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// bootModules are what the initramfs loads to mount the host's root over
// 9p (with their dependencies, from modules.dep); everything else is
// loaded with modprobe from the host's root once the guest runs there.
var bootModules = []string{"virtio_pci", "9pnet_virtio", "9p"}

// initScript is the guest's /init: mount the host's root read-only over
// 9p, give it writable tmpfs where the tools write, mount the results
// share and run the scenario driver there with the arguments the host
// wrote; then power off.
const initScript = `#!/bin/busybox sh
/bin/busybox --install -s /bin
export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root NFS_GUEST=1
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in $(cat /modules); do insmod /lib/modules/$m.ko || echo "init: insmod $m failed"; done
mkdir -p /newroot
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=262144,cache=loose hostroot /newroot || poweroff -f
mount -t tmpfs -o mode=1777 tmpfs /newroot/tmp
mount -t tmpfs -o mode=0755 tmpfs /newroot/run
mount -t tmpfs -o mode=0755 tmpfs /newroot/var/lib
mkdir -p /newroot/run/work
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 work /newroot/run/work || poweroff -f
mount --move /proc /newroot/proc
mount --move /sys /newroot/sys
mount --move /dev /newroot/dev
cd /newroot
chroot /newroot /run/work/guest.test $(cat /newroot/run/work/args) >/newroot/run/work/guest.out 2>&1
echo $? >/newroot/run/work/rc
sync
poweroff -f
`

// writeInitramfs writes an uncompressed newc cpio archive with busybox,
// the boot modules and initScript.
func writeInitramfs(path, modDir string, modules []string) error {
	order, err := moduleOrder(modDir, modules)
	if err != nil {
		return err
	}
	var a cpioWriter
	for _, d := range []string{"bin", "dev", "proc", "sys", "lib", "lib/modules"} {
		a.dir(d)
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox: %w", err)
	}
	a.file("bin/busybox", 0o755, bb)
	a.file("init", 0o755, []byte(initScript))
	var names []string
	for _, rel := range order {
		b, err := os.ReadFile(filepath.Join(modDir, rel))
		if err != nil {
			return err
		}
		name := strings.TrimSuffix(filepath.Base(rel), ".ko")
		a.file("lib/modules/"+name+".ko", 0o644, b)
		names = append(names, name)
	}
	a.file("modules", 0o644, []byte(strings.Join(names, "\n")+"\n"))
	return os.WriteFile(path, a.finish(), 0o644)
}

// moduleOrder lists the module files of mods and their dependencies,
// each dependency before its users, from modules.dep.
func moduleOrder(modDir string, mods []string) ([]string, error) {
	f, err := os.Open(filepath.Join(modDir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps := map[string][]string{}
	byName := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		deps[mod] = strings.Fields(rest)
		name := strings.TrimSuffix(filepath.Base(mod), ".ko")
		byName[strings.ReplaceAll(name, "-", "_")] = mod
	}
	var order []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(mod string) {
		if seen[mod] {
			return
		}
		seen[mod] = true
		// modules.dep lists every dependency, the deepest last.
		ds := deps[mod]
		for i := len(ds) - 1; i >= 0; i-- {
			visit(ds[i])
		}
		order = append(order, mod)
	}
	for _, m := range mods {
		mod, ok := byName[m]
		if !ok {
			continue // built into the kernel
		}
		visit(mod)
	}
	return order, nil
}

// cpioWriter builds a newc ("070701") cpio archive in memory.
type cpioWriter struct {
	buf bytes.Buffer
	ino int
}

func (w *cpioWriter) entry(name string, mode uint32, data []byte) {
	w.ino++
	fmt.Fprintf(&w.buf, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
		w.ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
	w.buf.WriteString(name)
	w.buf.WriteByte(0)
	w.pad()
	w.buf.Write(data)
	w.pad()
}

func (w *cpioWriter) pad() {
	for w.buf.Len()%4 != 0 {
		w.buf.WriteByte(0)
	}
}

func (w *cpioWriter) dir(name string) { w.entry(name, 0o040755, nil) }

func (w *cpioWriter) file(name string, perm uint32, data []byte) {
	w.entry(name, 0o100000|perm, data)
}

func (w *cpioWriter) finish() []byte {
	w.entry("TRAILER!!!", 0, nil)
	return w.buf.Bytes()
}
