/// Kanshi's built-in rules: what `kanshi rules check`, `kanshi trace --rules builtin` and the
/// sandbox run without a rules file (`kanshi rules show` prints them; the README documents the format).
public enum BuiltinRules {
    public static let yaml = #"""
    # Kanshi's built-in rules. Fields: kanshi rules fields. Format: README, "Rules".
    # Actions: the ransomware rules pause the sandbox's guest and roll its disk back, and under
    # kanshi trace kill the process tree; the others alert only.

    - list: package_managers
      items: [dpkg, apt, apt-get, aptitude, rpm, dnf, yum, pip, pip3, snapd, unattended-upgr, flatpak]
    - list: compressors
      items: [gzip, gunzip, bzip2, xz, zstd, lz4, pigz, 7z, zip]
    - list: credential_readers
      items: [sshd, sshd-session, sudo, su, passwd, login, chage, chpasswd, useradd, usermod, userdel, groupadd,
              unix_chkpwd, pwck, grpck, shadowconfig, cron, crond, polkitd, systemd, systemd-logind, gdm-session-wor, vipw]
    - list: shadow_files
      items: [/etc/shadow, /etc/gshadow, /etc/shadow-, /etc/gshadow-, /etc/sudoers, /etc/security/opasswd]
    - list: log_keepers
      items: [logrotate, rsyslogd, syslog-ng, systemd-journald, journalctl, auditd]
    - list: shells
      items: [bash, sh, dash, zsh, ksh, fish, python3, python, mysql, psql, less, vim, vi]
    - list: history_files
      items: [.bash_history, .zsh_history, .sh_history, .ash_history, .python_history, .mysql_history, .psql_history,
              .lesshst, .viminfo, .node_repl_history]
    - list: shell_startup_files
      items: [.bashrc, .bash_profile, .bash_login, .bash_logout, .profile, .zshrc, .zprofile, .zlogin, .zshenv, .kshrc]
    - list: toolchain
      items: [ld, ld.bfd, ld.gold, ld.lld, collect2, cc1, gcc, g++, clang, go, rustc, swift-frontend, swift-build, swiftc, javac]
    - list: time_keepers
      items: [tar, cp, rsync, unzip, dpkg, apt, rpm, make, git, install, mv]

    - macro: opened
      condition: ev = open and ret >= 0
    - macro: open_write
      condition: opened and (flags startswith w or flags startswith rw)
    - macro: open_existing_write
      condition: open_write and not flags contains creat
    - macro: open_read
      condition: opened and flags startswith r and not flags startswith rw
    - macro: open_create
      condition: opened and flags contains creat
    - macro: system_path
      condition: path startswith /proc/ or path startswith /sys/ or path startswith /dev/
    - macro: changed_by_name
      condition: ev in (rename, link, symlink) and ret = 0
    - macro: from_package_manager
      condition: proc.name in (package_managers) or proc.anames contains dpkg or proc.anames contains rpm

    # --- Ransomware -------------------------------------------------------------------------

    - rule: file-overwritten-encrypted
      desc: >
        An existing file opened for writing, then closed having had random-looking data written into it
        (where the sensor measures what was written, as the VM sensor does; elsewhere any close counts).
      silent: true
      sequence:
        by: process
        within: 60s
        steps:
          - name: open
            condition: open_existing_write and not system_path
            by: path
          - name: close
            condition: ev = close and (not entropy exists or entropy >= 7.0)
            by: path

    - rule: ransomware-encrypts-files-in-place
      desc: One process tree overwrote many existing files with encrypted-looking data in a short time.
      count:
        rule: file-overwritten-encrypted
        by: tree
        distinct: path
        window: 30s
        threshold: 20
      severity: critical
      tags: [attack.impact, attack.t1486]
      output: "%proc.name (pid %pid, tree %proc.tree) overwrote %count files in %window with encrypted-looking data; the last: %path"
      actions: [alert, pause, rollback, kill]

    - rule: file-copied-then-deleted
      desc: >
        A new file written under an existing file's name plus an extension (random-looking where measured),
        then that file deleted. (Writing the copy means its content was read: the read is not a step.)
      silent: true
      sequence:
        by: process
        within: 60s
        steps:
          - name: copy
            condition: open_create and path.ext != "" and not system_path
            by: path.noext
          - name: written
            condition: ev = close and (not entropy exists or entropy >= 7.0)
            by: path.noext
          - name: delete
            condition: ev = unlink and ret = 0 and not proc.name in (compressors)
            by: path

    - rule: ransomware-writes-copies-and-deletes-originals
      desc: One process tree replaced many files by encrypted-looking copies under a new extension and deleted the originals.
      count:
        rule: file-copied-then-deleted
        by: tree
        distinct: path
        window: 30s
        threshold: 20
      severity: critical
      tags: [attack.impact, attack.t1486, attack.t1485]
      output: "%proc.name (pid %pid, tree %proc.tree) wrote copies of %count files under a new extension and deleted the originals in %window; the last: %path"
      actions: [alert, pause, rollback, kill]

    - rule: ransomware-mass-rename
      desc: One process tree renamed many files to their own name plus a new extension (a.docx -> a.docx.locked).
      count:
        condition: >
          ev = rename and ret = 0 and path2 startswith $this.path and path2 != $this.path
          and not path2.ext in (tmp, bak, old, orig, part, swp, save, backup, new)
        by: tree
        distinct: path
        window: 30s
        threshold: 20
      severity: critical
      tags: [attack.impact, attack.t1486]
      output: "%proc.name (pid %pid, tree %proc.tree) renamed %count files to a new extension in %window; the last: %path -> %path2"
      actions: [alert, pause, rollback, kill]

    - rule: ransomware-detector-alert
      desc: A ransomware detector (the disk's windows, or the process model on the behaviour log) raised the alert the sandbox acts on; journaled as a note, so rules see it live and in the journal afterwards. (A detector that only watches beside another journals its alerts too, with acting false.)
      condition: ev = note and note.event = detector-alert and verdict.acting
      severity: critical
      tags: [attack.impact, attack.t1486]
      output: "the %verdict.detector detector alerted (p %verdict.probability) on the window from %verdict.window; named: %verdict.pid %verdict.argv"

    # --- Exfiltration -------------------------------------------------------------------------

    - rule: exfiltration-by-managed-process
      desc: A process that touched confidential data (managed) tried to send something off the machine or out of its managed files; the sensor refused it.
      condition: managed and ev = blocked
      severity: high
      tags: [attack.exfiltration, attack.t1041, attack.t1048]
      output: "managed process %proc.name (pid %pid) tried %call, refused: %reason"

    - rule: managed-process-network-connection
      desc: A managed process connected or sent to a network address (not refused, e.g. a loopback or local socket the policy allows).
      condition: managed and ev in (connect, send) and ret >= 0 and addr exists and not addr startswith unix and not addr startswith "@"
      severity: medium
      tags: [attack.exfiltration, attack.t1041]
      output: "managed process %proc.name (pid %pid) %ev %addr"

    # --- Credential access --------------------------------------------------------------------

    - rule: credential-file-read
      desc: The password or sudo files, or a private SSH key, opened by a program that has no business with them.
      condition: >
        opened and (path in (shadow_files)
        or (path contains /.ssh/ and ((path glob "*/.ssh/id_*" and not path endswith .pub) or path glob "*/.ssh/*_key"))
        or path endswith /.aws/credentials or path endswith /.docker/config.json)
        and not proc.name in (credential_readers)
      severity: high
      tags: [attack.credential_access, attack.t1003.008, attack.t1552.004]
      output: "%proc.name (pid %pid) opened %path (%flags)"

    # --- Persistence --------------------------------------------------------------------------

    - macro: cron_path
      condition: path startswith /etc/cron or path startswith /var/spool/cron/ or path = /etc/anacrontab
    - macro: cron_path2
      condition: path2 startswith /etc/cron or path2 startswith /var/spool/cron/ or path2 = /etc/anacrontab
    - rule: persistence-cron
      desc: A cron table written or replaced (not by a package manager).
      condition: ((open_write and cron_path) or (changed_by_name and cron_path2)) and not from_package_manager
      severity: high
      tags: [attack.persistence, attack.t1053.003]
      output: "%proc.name (pid %pid) changed a cron table: %path %path2"

    - macro: unit_dir
      condition: >
        path startswith /etc/systemd/system/ or path startswith /lib/systemd/system/ or path startswith /usr/lib/systemd/system/
        or path startswith /etc/systemd/user/ or path contains /.config/systemd/user/ or path startswith /etc/init.d/ or path = /etc/rc.local
    - macro: unit_dir2
      condition: >
        path2 startswith /etc/systemd/system/ or path2 startswith /lib/systemd/system/ or path2 startswith /usr/lib/systemd/system/
        or path2 startswith /etc/systemd/user/ or path2 contains /.config/systemd/user/ or path2 startswith /etc/init.d/ or path2 = /etc/rc.local
    - rule: persistence-service
      desc: A systemd unit or init script written or linked (not by a package manager or systemctl).
      condition: ((open_write and unit_dir) or (changed_by_name and unit_dir2)) and not from_package_manager and not proc.name in (systemctl, systemd)
      severity: high
      tags: [attack.persistence, attack.t1543.002, attack.t1037.004]
      output: "%proc.name (pid %pid) changed a service definition: %path %path2"

    - rule: persistence-shell-startup
      desc: A shell start-up file written (runs at every login or shell).
      condition: >
        ((open_write and ((path contains /. and path.name in (shell_startup_files)) or path startswith /etc/profile.d/ or path in (/etc/profile, /etc/bash.bashrc, /etc/environment)))
        or (changed_by_name and ((path2 contains /. and path2.name in (shell_startup_files)) or path2 startswith /etc/profile.d/)))
        and not from_package_manager
      severity: medium
      tags: [attack.persistence, attack.t1546.004]
      output: "%proc.name (pid %pid) changed a shell start-up file: %path %path2"

    - rule: persistence-ssh-authorized-keys
      desc: An authorized_keys file written (a key that can log in).
      condition: (open_write and path endswith /.ssh/authorized_keys) or (changed_by_name and path2 endswith /.ssh/authorized_keys)
      severity: high
      tags: [attack.persistence, attack.t1098.004]
      output: "%proc.name (pid %pid) changed %path %path2"

    # --- Defence evasion ----------------------------------------------------------------------

    - rule: log-wiped
      desc: A system log deleted or emptied by something other than the log keepers.
      condition: >
        path startswith /var/log/ and not path.ext in (gz, xz, zst, bz2) and not proc.name in (log_keepers)
        and ((ev = unlink and ret = 0) or (ev = truncate and ret = 0) or (opened and flags contains trunc and not flags contains creat))
      severity: high
      tags: [attack.defense_evasion, attack.t1070.002]
      output: "%proc.name (pid %pid) wiped %path (%ev)"

    - rule: history-wiped
      desc: A command history deleted, emptied, linked to /dev/null, or overwritten by a program that is not its shell.
      condition: >
        (path contains /. and path.name in (history_files) and ((ev = unlink and ret = 0) or (ev = truncate and ret = 0)
          or (opened and flags contains trunc and not proc.name in (shells))))
        or (ev = symlink and ret = 0 and path = /dev/null and path2.name in (history_files))
      severity: high
      tags: [attack.defense_evasion, attack.t1070.003]
      output: "%proc.name (pid %pid) wiped the history %path %path2 (%ev)"

    - rule: timestamp-forged
      desc: A file's times set to given values (not "now") by a program that is not an archiver or copier.
      condition: ev = utime and ret = 0 and flags contains set and not proc.name in (time_keepers) and not system_path
      severity: medium
      tags: [attack.defense_evasion, attack.t1070.006]
      output: "%proc.name (pid %pid) set the times of %path (%reason)"

    # --- Execution ----------------------------------------------------------------------------

    - rule: written-file-executed
      desc: A program run from a file written moments before (a dropped payload), not by a compiler or package manager.
      sequence:
        by: vm
        within: 10m
        steps:
          - name: write
            condition: (open_write or open_create) and not system_path and not from_package_manager and not proc.name in (toolchain)
            by: path
          - name: run
            condition: ev = exec and ret = 0
            by: path
      severity: high
      tags: [attack.execution, attack.t1204.002, attack.t1105]
      output: "%proc.name (pid %pid) ran %path, written by pid %write.pid (%write.proc.name)"
    """#
}
