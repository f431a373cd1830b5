// Server-side web shells: a script dropped on a web server gives its uploader a remote shell.
// A community platform never runs what it stores, but one shared from here lands on someone's
// PHP host. Each pattern is a single string (at most ~1 KiB long), so a match is found however
// the file is cut into scan windows (the windows overlap by more than that).

// China Chopper (FireEye, "Breaking Down the China Chopper Web Shell", 2013): its whole server
// side is one line, `<?php @eval($_POST['password']);?>` or `<%eval request("password")%>`,
// that runs whatever the client posts. The same one-liner is the usual minimal PHP backdoor.
rule PHP_ASP_China_Chopper
{
    meta:
        description = "China Chopper style one-line eval web shell (PHP or ASP)"
        reference = "FireEye, Breaking Down the China Chopper Web Shell, Part I (2013)"
    strings:
        $php = /<\?php\s*@?\s*eval\s*\(\s*\$_(POST|GET|REQUEST|COOKIE)\s*\[/ nocase
        $asp = /<%\s*eval\s+request\s*\(\s*"/ nocase
    condition:
        any of them
}

// Encoded PHP payloads: `eval(base64_decode(...))`, optionally through gzinflate,
// gzuncompress or str_rot13, is how packed shells (c99, r57, WSO/FilesMan) and most PHP
// backdoors injected into hacked sites hide their code; public web shell rule sets match the
// same construct. Plain PHP code has no reason to eval decoded data, so it is kept narrow: the
// eval must come within 1 KiB after a `<?php` opening tag.
rule PHP_Eval_Encoded_Payload
{
    meta:
        description = "PHP that evals a base64-decoded (optionally compressed) payload"
    strings:
        $eval = /<\?php.{0,1024}\beval\s*\(\s*((gzinflate|gzuncompress|str_rot13)\s*\(\s*)*base64_decode\s*\(/is
    condition:
        $eval
}
