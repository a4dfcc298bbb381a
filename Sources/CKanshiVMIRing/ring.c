// The ring layout is in the header; here, what the plugin and kanshi both decide by call number.

#include "CKanshiVMIRing.h"

int kvmi_model_needs(int abi, int64_t nr) {
    if (abi == KVMI_ABI_I386) {
        switch (nr) {
        case 5: case 6: case 8: case 295: case 437: case 41: case 63: case 330: case 55: case 221: case 42:
        case 331: case 102: case 359: case 360: case 362: case 361: case 364: case 369: case 370: case 345:
        case 371: case 372: case 337: case 11: case 358: case 2: case 190: case 120: case 435: case 1:
        case 252: case 38: case 302: case 353: case 9: case 303: case 83: case 304: case 10: case 301:
        case 40: case 92: case 93: case 193: case 194: case 192: case 12: case 133: case 4: case 181:
        case 146: case 334: case 379: case 187: case 239: case 313: case 315: case 316: case 377:
        case 30: case 271: case 299: case 320:
            return 1;
        default:
            return 0;
        }
    }
    switch (nr) {
    case 2: case 3: case 85: case 257: case 437: case 32: case 33: case 292: case 72: case 22: case 293:
    case 41: case 53: case 42: case 49: case 43: case 288: case 44: case 46: case 307: case 45: case 47:
    case 299: case 59: case 322: case 57: case 58: case 56: case 435: case 60: case 231: case 82: case 264:
    case 316: case 86: case 265: case 88: case 266: case 87: case 263: case 84: case 76: case 77: case 9:
    case 80: case 81: case 1: case 18: case 20: case 296: case 328: case 40: case 275: case 276: case 278:
    case 326: case 132: case 235: case 261: case 280:
        return 1;
    default:
        return 0;
    }
}
