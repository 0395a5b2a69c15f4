#!/usr/bin/env python3
"""conf_local.py - a shipped config file, pointed at local test services.

    conf_local.py SRC DEST [SECTION:KEY=VALUE ...] [--replace OLD=NEW ...]

Copies SRC to DEST line by line, setting each SECTION:KEY (SECTION as
written between the brackets, quotes dropped, e.g. "core", "module
segments"; KEY may hold dots, e.g. rdkafka.linger.ms) to VALUE:
in place where the key is set, else as a new line at the end of that
section.  A SECTION that is absent is left absent, so a role file only
gets the settings of the parts it runs.  --replace substitutes text in
every value (e.g. the bootstrap file path).  Comments and the order of
everything else stay as shipped, so the test runs the file users get.
"""
import re
import sys


def main(argv):
    if len(argv) < 3:
        sys.stderr.write(__doc__)
        return 2
    src, dest, rest = argv[1], argv[2], argv[3:]
    sets, replaces = {}, []
    i = 0
    while i < len(rest):
        if rest[i] == "--replace" and i + 1 < len(rest):
            old, _, new = rest[i + 1].partition("=")
            replaces.append((old, new))
            i += 2
            continue
        name, eq, value = rest[i].partition("=")
        section, colon, key = name.partition(":")
        if not eq or not colon:
            sys.stderr.write("conf_local.py: expected SECTION:KEY=VALUE, got %r\n" % rest[i])
            return 2
        sets.setdefault(section, {})[key] = value
        i += 1

    out, section, done = [], None, set()

    def close_section():
        # Keys not found in the section just closed go at its end, before
        # the blank lines and comments that separate it from the next.
        if section is None:
            return
        missing = [(k, v) for k, v in sets.get(section, {}).items() if (section, k) not in done]
        at = len(out)
        while at > 0 and (out[at - 1].strip() == "" or out[at - 1].lstrip().startswith(("#", ";"))):
            at -= 1
        out[at:at] = ["%s = %s\n" % kv for kv in missing]
        done.update((section, k) for k, _ in missing)

    with open(src) as f:
        for line in f:
            head = re.match(r'\s*\[\s*([^\]]+?)\s*\]', line)
            if head:
                close_section()
                section = re.sub(r'\s+', ' ', head.group(1).replace('"', ''))
                out.append(line)
                continue
            kv = re.match(r'(\s*)([A-Za-z0-9_.*-]+)(\s*=\s*)(.*)$', line.rstrip("\n"))
            if kv and section is not None:
                key, value = kv.group(2), kv.group(4)
                if key in sets.get(section, {}):
                    value = sets[section][key]
                    done.add((section, key))
                for old, new in replaces:
                    value = value.replace(old, new)
                out.append("%s%s%s%s\n" % (kv.group(1), key, kv.group(3), value))
                continue
            out.append(line)
    close_section()
    with open(dest, "w") as f:
        f.writelines(out)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
