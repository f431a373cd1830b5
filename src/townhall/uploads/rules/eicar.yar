// The EICAR anti-virus test file (https://www.eicar.org/download-anti-malware-testfile/): the
// 68 characters below at offset 0, optionally followed by whitespace (space, tab, LF, CR,
// Ctrl-Z) up to a total file length of 128 bytes. Anything else, e.g. the string quoted inside
// a longer text, is not the test file, as EICAR's own definition says.
//
// `window_offset` and `total_size` are globals the scanner sets (adapters/yara.py): a file is
// scanned in windows, and `total_size` is -1 until the last window, so this holds only when the
// whole file is in the first window.

rule EICAR_Test_File
{
    meta:
        description = "EICAR standard anti-virus test file"
        reference = "https://www.eicar.org/download-anti-malware-testfile/"
    strings:
        $eicar = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"
    condition:
        window_offset == 0 and total_size >= 68 and total_size <= 128 and $eicar at 0 and
        (
            total_size == 68 or
            for all i in (68 .. total_size - 1) : (
                uint8(i) == 0x20 or uint8(i) == 0x09 or uint8(i) == 0x0A or
                uint8(i) == 0x0D or uint8(i) == 0x1A
            )
        )
}
