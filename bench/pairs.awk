# bench/pairs.awk — joins the file provider's output with the send log:
#   awk -f pairs.awk sms.jsonl sent.0 sent.1 …  >  pairs ("requestId code")
# sms.jsonl lines carry "to":"+91…" and "text":"CODE is your …"; the send log
# lines are "91… req_…" (phone without '+', requestId). A number that appears in
# more than one SMS is dropped (its code would be ambiguous).
FNR == NR {
    if (match($0, /"to":"\+[0-9]+"/)) {
        phone = substr($0, RSTART + 7, RLENGTH - 8)
        if (match($0, /"text":"[0-9]+/)) {
            code = substr($0, RSTART + 8, RLENGTH - 8)
            if (phone in codes)
                dup[phone] = 1
            codes[phone] = code
        }
    }
    next
}
($1 in codes) && !($1 in dup) {
    print $2, codes[$1]
}
