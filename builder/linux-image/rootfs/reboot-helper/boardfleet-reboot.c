/*
 * boardfleet-reboot: flushes the filesystems and restarts the board at once. With the argument
 * "tryboot" it restarts with the command TRYBOOT_ARGUMENT ("0 tryboot"), which tells the
 * Raspberry Pi firmware to boot the slot tryboot.txt names, this once. busybox's reboot cannot
 * pass a restart command, hence this program. Built static by the image builder.
 */
#include <linux/reboot.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/syscall.h>
#include <unistd.h>

/* From protocol/linux-ab-layout.ts, passed by the builder. */
#if !defined(TRYBOOT_ARGUMENT) || !defined(BOOT_MOUNT) || !defined(DATA_MOUNT)
#error "build with -DTRYBOOT_ARGUMENT=\"0 tryboot\" -DBOOT_MOUNT=\"/boot/firmware\" -DDATA_MOUNT=\"/data\""
#endif

static void say(const char *text) {
	ssize_t ignored = write(2, text, strlen(text));
	(void)ignored;
}

int main(int argc, char **argv) {
	int tryboot = argc == 2 && strcmp(argv[1], "tryboot") == 0;
	if (argc > 2 || (argc == 2 && !tryboot)) {
		say("usage: boardfleet-reboot [tryboot]\n");
		return 2;
	}
	sync();
	/*
	 * Best effort: a filesystem remounted read-only is clean at the next boot (the FAT keeps no
	 * journal and would be marked dirty). One still busy with files open for writing stays as it
	 * is, synced, and ext4's journal covers it.
	 */
	mount(NULL, BOOT_MOUNT, NULL, MS_REMOUNT | MS_RDONLY, NULL);
	mount(NULL, DATA_MOUNT, NULL, MS_REMOUNT | MS_RDONLY, NULL);
	sync();
	if (tryboot) {
		syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_RESTART2,
		        TRYBOOT_ARGUMENT);
	} else {
		syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2, LINUX_REBOOT_CMD_RESTART, 0);
	}
	say("boardfleet-reboot: the kernel refused to restart (not root?)\n");
	return 1;
}
