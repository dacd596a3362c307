/* util/error.c — lookup tables generated from the OTP_ERRORS list. */
#include "util/error.h"

static const struct {
    int status;
    const char *code;
    const char *message;
} table[] = {
#define OTP_ERR_ROW(name, status, code, msg) {status, code, msg},
    OTP_ERRORS(OTP_ERR_ROW)
#undef OTP_ERR_ROW
};

int otp_err_status(otp_err e)
{
    return (unsigned)e < OTP_E__COUNT ? table[e].status : 500;
}

const char *otp_err_code(otp_err e)
{
    return (unsigned)e < OTP_E__COUNT ? table[e].code : "internal_error";
}

const char *otp_err_message(otp_err e)
{
    return (unsigned)e < OTP_E__COUNT ? table[e].message : "Internal error";
}
