/* delivery/provider.c — the table of provider types that [provider.NAME] sections
 * may name with `type = …`. A new provider adds one row here and nothing else in
 * the dispatcher or main changes. */
#include "delivery/provider.h"

#include <string.h>

static const otp_provider_ops *const types[] = {
    &otp_provider_file_ops,
};

const otp_provider_ops *otp_provider_type(const char *type)
{
    if (!type)
        return NULL;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++)
        if (strcmp(types[i]->type, type) == 0)
            return types[i];
    return NULL;
}
