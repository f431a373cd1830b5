// Windows executables. A community platform takes images, documents and archives; a PE file
// (.exe, .dll, .scr) is the commonest malware carrier there is, and here it can only arrive as
// "unrecognised binary", however it is named. So it is refused, whatever it does.
//
// A PE starts with the DOS header `MZ`, whose `e_lfanew` (a 32-bit offset at 0x3C) points to
// the `PE\0\0` signature (Microsoft, "PE Format", learn.microsoft.com/windows/win32/debug/pe-format).
// Linkers also put the DOS stub message near the start; either one, after `MZ` at offset 0,
// makes it an executable. Text, images, PDF and zip files cannot start with `MZ` and hold
// either at those places.

rule Windows_PE_Executable
{
    meta:
        description = "Windows PE executable (MZ header with a PE signature or the DOS stub)"
        reference = "https://learn.microsoft.com/windows/win32/debug/pe-format"
    strings:
        $stub = "This program cannot be run in DOS mode"
    condition:
        window_offset == 0 and uint16(0) == 0x5A4D and
        (
            (uint32(0x3C) >= 0x40 and uint32(0x3C) < 0x10000 and
             uint32(uint32(0x3C)) == 0x00004550) or
            $stub in (0x40 .. 0x200)
        )
}
